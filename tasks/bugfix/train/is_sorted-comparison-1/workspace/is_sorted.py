def is_sorted(items, descending=False):
    """Return True if items are in ascending order (descending order if asked);
    equal neighbours are allowed."""
    for i in range(len(items) - 1):
        if descending and items[i] < items[i + 1]:
            return False
        if not descending and items[i] >= items[i + 1]:
            return False
    return True
