def factorial(n):
    """Return n! for a non-negative integer n (0! is 1).

    Raises ValueError for a negative n.
    """
    result = 1
    for k in range(2, n + 1):
        result *= k
    return result
