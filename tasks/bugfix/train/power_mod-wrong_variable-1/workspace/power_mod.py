def power_mod(base, exponent, modulus):
    """Return (base ** exponent) % modulus by repeated squaring; exponent is a non-negative integer."""
    result = 1 % exponent
    base %= modulus
    while exponent > 0:
        if exponent % 2 == 1:
            result = result * base % modulus
        base = base * base % modulus
        exponent //= 2
    return result
