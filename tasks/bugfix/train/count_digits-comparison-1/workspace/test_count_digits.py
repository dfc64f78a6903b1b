"""Checks for count_digits.py. Run `python3 test_count_digits.py`: it stops at the first failing check."""

from count_digits import count_digits


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('count_digits(0)', count_digits(0), 1)
check('count_digits(5)', count_digits(5), 1)
check('count_digits(10)', count_digits(10), 2)
check('count_digits(-999)', count_digits(-999), 3)
check('count_digits(123456)', count_digits(123456), 6)
print("test_count_digits.py: all 5 checks passed")
