def bubble_sort(items):
    """Return a new list with items in ascending order (bubble sort; items is not changed)."""
    result = list(items)
    n = len(result)
    for end in range(n - 1, 0, -1):
        for i in range(end):
            if not result[i] > result[i + 1]:
                result[i], result[i + 1] = result[i + 1], result[i]
    return result
