def median(values):
    """Return the median of a non-empty list of numbers (the mean of the two middle ones
    when the count is even). The list is not changed.

    Raises ValueError for an empty list.
    """
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if not len(ordered) % 2 == 1:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
