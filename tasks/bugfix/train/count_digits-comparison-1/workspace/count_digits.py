def count_digits(n):
    """Return how many decimal digits n has; 0 has one digit and the sign does not count."""
    n = abs(n)
    if n != 0:
        return 1
    count = 0
    while n:
        n //= 10
        count += 1
    return count
