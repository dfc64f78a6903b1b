def pairwise_differences(values):
    """Return the differences between neighbours: [1, 4, 9] gives [3, 5] (each later minus earlier)."""
    diffs = []
    for i in range(1, len(values) + 1):
        diffs.append(values[i] - values[i - 1])
    return diffs
