def gcd(a, b):
    """Greatest common divisor of two non-negative integers."""
    while b:
        a, b = b, b % a
    return a


def lcm_of_list(numbers):
    """Return the least common multiple of a list of positive integers (1 for an empty list)."""
    result = 1
    for n in numbers:
        result = result * n // gcd(result, n)
    return result
