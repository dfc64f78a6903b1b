def gcd_steps(a, b):
    """Return (g, steps): the greatest common divisor of two non-negative integers by
    Euclid's algorithm and the number of remainder steps it took. gcd_steps(0, 0) is (0, 0)."""
    steps = 0
    while b == 0:
        a, b = b, a % b
        steps += 1
    return a, steps
