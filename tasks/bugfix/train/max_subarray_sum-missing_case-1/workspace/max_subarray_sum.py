def max_subarray_sum(values):
    """Return the largest sum of a non-empty run of consecutive values (Kadane's algorithm).

    Raises ValueError for an empty list."""
    best = current = values[0]
    for v in values[1:]:
        current = max(v, current + v)
        best = max(best, current)
    return best
