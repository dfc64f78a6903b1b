def rotate_left(items, k):
    """Return items rotated left by k places: rotate_left([1, 2, 3, 4], 1) gives [2, 3, 4, 1].

    k may be larger than the list or negative (a right rotation)."""
    if not items:
        return []
    k %= len(items)
    return items[k - 1:] + items[:k]
