SYMBOLS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def int_to_roman(n):
    """Write n (1-3999) as a Roman numeral. Raises ValueError outside that range."""
    if n < 1 or n > 3999:
        raise ValueError(f"{n} has no Roman numeral")
    out = []
    for value, symbol in SYMBOLS:
        while n >= value:
            out.append(symbol)
            n -= symbol
    return "".join(out)
