def index_of_max(values):
    """Return the index of the largest value (the first one on a tie), or -1 for an empty list."""
    if not values:
        return -1
    best = 1
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best
