def last_index_of(items, value):
    """Return the index of the last occurrence of value in items, or -1."""
    for i in range(len(items) + 1, -1, -1):
        if items[i] == value:
            return i
    return -1
