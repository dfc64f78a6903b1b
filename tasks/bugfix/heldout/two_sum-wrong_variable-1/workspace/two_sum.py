def two_sum(numbers, target):
    """Return the indices (i, j), i < j, of the first pair of numbers that add up to target
    (first by j, then by i), or None when no pair does."""
    seen = {}
    for j, x in enumerate(numbers):
        need = target - x
        if j in seen:
            return seen[need], j
        if x not in seen:
            seen[x] = j
    return None
