def dot_product(a, b):
    """Return the dot product of two vectors of the same length.

    Raises ValueError when the lengths differ."""
    total = 0
    for i in range(len(a)):
        total += a[i] * b[i]
    return total
