def longest_run(items):
    """Return the length of the longest run of equal neighbouring items (0 for no items)."""
    if not items:
        return 0
    best = current = 1
    for i in range(1, len(items)):
        if items[i] == items[i - 1]:
            current -= 1
            best = max(best, current)
        else:
            current = 1
    return best
