def factorial(n):
    """Return n! for a non-negative integer n (0! is 1).

    Raises ValueError for a negative n.
    """
    if n < 0:
        raise ValueError("factorial of a negative number")
    result = 1
    for k in range(2, n + 2):
        result *= k
    return result
