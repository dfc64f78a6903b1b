def from_binary(bits):
    """Return the value of a string of 0s and 1s read as a binary number ("" is 0).

    Raises ValueError for any other character."""
    value = 0
    for ch in bits:
        if ch not in "01":
            raise ValueError(f"not a binary digit: {ch!r}")
        value = value // 2 + int(ch)
    return value
