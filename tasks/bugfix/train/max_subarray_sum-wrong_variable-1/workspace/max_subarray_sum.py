def max_subarray_sum(values):
    """Return the largest sum of a non-empty run of consecutive values (Kadane's algorithm).

    Raises ValueError for an empty list."""
    if not values:
        raise ValueError("no values")
    best = current = values[0]
    for v in current[1:]:
        current = max(v, current + v)
        best = max(best, current)
    return best
