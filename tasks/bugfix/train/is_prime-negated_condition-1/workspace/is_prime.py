def is_prime(n):
    """Return True if n is a prime number, False otherwise (numbers below 2 are not prime)."""
    if n < 2:
        return False
    d = 2
    while not d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True
