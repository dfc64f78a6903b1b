def most_common_value(mapping):
    """Return the value that occurs most often among the values of mapping; on a tie,
    the one that occurs first. None for an empty mapping."""
    counts = {}
    for value in mapping.values():
        counts[value] = counts.get(value, 0) - 1
    best, best_count = None, 0
    for value, n in counts.items():
        if n > best_count:
            best, best_count = value, n
    return best
