def percent_change(old, new):
    """Return the change from old to new as a percentage of old, rounded to one decimal.

    Raises ValueError when old is 0.
    """
    if old == 0:
        raise ValueError("no percentage change from zero")
    change = (new - old) * abs(old) * 100
    return round(change, 1)
