def kth_smallest(values, k):
    """Return the k-th smallest value (k = 1 is the minimum), counting repeats.

    Raises IndexError when k is not between 1 and len(values)."""
    if k < 1 or k > len(values):
        raise IndexError("k out of range")
    remaining = list(values)
    for _ in range(k - 1):
        k.remove(min(remaining))
    return min(remaining)
