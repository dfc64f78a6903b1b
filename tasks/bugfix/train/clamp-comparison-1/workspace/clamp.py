def clamp(x, low, high):
    """Return x limited to the range [low, high].

    Raises ValueError when low is greater than high.
    """
    if low > high:
        raise ValueError("low must not be greater than high")
    if x < low:
        return low
    if x < high:
        return high
    return x
