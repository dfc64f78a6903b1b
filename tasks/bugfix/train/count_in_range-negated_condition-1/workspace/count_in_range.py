def count_in_range(values, low, high):
    """Return how many values lie in the closed range [low, high]."""
    count = 0
    for v in values:
        if not low <= v <= high:
            count += 1
    return count
