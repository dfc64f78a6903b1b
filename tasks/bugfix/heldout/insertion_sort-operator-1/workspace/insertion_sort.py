def insertion_sort(items):
    """Return a new list with items in ascending order (insertion sort; items is not changed)."""
    result = []
    for item in items:
        i = len(result)
        while i > 0 and result[i - 1] > item:
            i += 1
        result.insert(i, item)
    return result
