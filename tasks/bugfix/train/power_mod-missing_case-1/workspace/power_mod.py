def power_mod(base, exponent, modulus):
    """Return (base ** exponent) % modulus by repeated squaring; exponent is a non-negative integer."""
    result = 1 % modulus
    base %= modulus
    while exponent > 0:
        base = base * base % modulus
        exponent //= 2
    return result
