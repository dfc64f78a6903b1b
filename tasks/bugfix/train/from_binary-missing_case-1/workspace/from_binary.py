def from_binary(bits):
    """Return the value of a string of 0s and 1s read as a binary number ("" is 0).

    Raises ValueError for any other character."""
    value = 0
    for ch in bits:
        value = value * 2 + int(ch)
    return value
