"""Checks for roman_to_int.py. Run `python3 test_roman_to_int.py`: it stops at the first failing check."""

from roman_to_int import roman_to_int


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("roman_to_int('III')", roman_to_int('III'), 3)
check("roman_to_int('IV')", roman_to_int('IV'), 4)
check("roman_to_int('IX')", roman_to_int('IX'), 9)
check("roman_to_int('XIV')", roman_to_int('XIV'), 14)
check("roman_to_int('MCMXCIV')", roman_to_int('MCMXCIV'), 1994)
check("roman_to_int('')", roman_to_int(''), 0)
check("roman_to_int('LVIII')", roman_to_int('LVIII'), 58)
check("roman_to_int('XX')", roman_to_int('XX'), 20)
print("test_roman_to_int.py: all 8 checks passed")
