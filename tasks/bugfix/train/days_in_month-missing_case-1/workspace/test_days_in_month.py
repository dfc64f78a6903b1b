"""Checks for days_in_month.py. Run `python3 test_days_in_month.py`: it stops at the first failing check."""

from days_in_month import days_in_month


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('days_in_month(1, 2023)', days_in_month(1, 2023), 31)
check('days_in_month(2, 2023)', days_in_month(2, 2023), 28)
check('days_in_month(2, 2024)', days_in_month(2, 2024), 29)
check('days_in_month(2, 1900)', days_in_month(2, 1900), 28)
check('days_in_month(2, 2000)', days_in_month(2, 2000), 29)
check('days_in_month(4, 2023)', days_in_month(4, 2023), 30)
check('days_in_month(12, 2023)', days_in_month(12, 2023), 31)
check_raises('days_in_month(13, 2023)', lambda: days_in_month(13, 2023), ValueError)
check_raises('days_in_month(0, 2023)', lambda: days_in_month(0, 2023), ValueError)
print("test_days_in_month.py: all 9 checks passed")
