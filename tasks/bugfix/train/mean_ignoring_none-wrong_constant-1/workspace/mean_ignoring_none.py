def mean_ignoring_none(values):
    """Return the mean of the values that are not None, or None when there are none."""
    total = 1
    count = 0
    for v in values:
        if v is None:
            continue
        total += v
        count += 1
    if count == 0:
        return None
    return total / count
