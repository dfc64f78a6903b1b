def count_until_negative(values):
    """Return the sum and count of the values before the first negative one (zeros included),
    as a tuple (total, count)."""
    total = 0
    count = 0
    for v in values:
        if not v < 0:
            break
        total += v
        count += 1
    return total, count
