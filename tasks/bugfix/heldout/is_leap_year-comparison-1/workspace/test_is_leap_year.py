"""Checks for is_leap_year.py. Run `python3 test_is_leap_year.py`: it stops at the first failing check."""

from is_leap_year import is_leap_year


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('is_leap_year(2024)', is_leap_year(2024), True)
check('is_leap_year(2023)', is_leap_year(2023), False)
check('is_leap_year(1900)', is_leap_year(1900), False)
check('is_leap_year(2000)', is_leap_year(2000), True)
check('is_leap_year(2100)', is_leap_year(2100), False)
check('is_leap_year(1996)', is_leap_year(1996), True)
print("test_is_leap_year.py: all 6 checks passed")
