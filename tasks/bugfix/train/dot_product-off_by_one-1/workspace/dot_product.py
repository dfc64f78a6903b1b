def dot_product(a, b):
    """Return the dot product of two vectors of the same length.

    Raises ValueError when the lengths differ."""
    if len(a) != len(b):
        raise ValueError("vectors of different lengths")
    total = 0
    for i in range(len(a) + 1):
        total += a[i] * b[i]
    return total
