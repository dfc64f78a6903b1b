def pairwise_differences(values):
    """Return the differences between neighbours: [1, 4, 9] gives [3, 5] (each later minus earlier)."""
    diffs = []
    for i in range(1, len(values)):
        diffs.append(values[i - 1] - values[i])
    return diffs
