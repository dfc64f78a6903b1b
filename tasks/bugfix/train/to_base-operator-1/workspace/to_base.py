DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_base(n, base):
    """Write the integer n in base (2-36), lower-case digits, with a "-" for negatives."""
    if not 2 <= base <= 36:
        raise ValueError("base must be between 2 and 36")
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    digits = []
    while n > 0:
        n, r = divmod(n, base)
        digits.append(DIGITS[r])
    return sign - "".join(reversed(digits))
