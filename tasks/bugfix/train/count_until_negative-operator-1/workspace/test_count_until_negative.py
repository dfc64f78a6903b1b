"""Checks for count_until_negative.py. Run `python3 test_count_until_negative.py`: it stops at the first failing check."""

from count_until_negative import count_until_negative


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('count_until_negative([3, 0, 4, -1, 5])', count_until_negative([3, 0, 4, -1, 5]), (7, 3))
check('count_until_negative([])', count_until_negative([]), (0, 0))
check('count_until_negative([-2, 5])', count_until_negative([-2, 5]), (0, 0))
check('count_until_negative([1, 2])', count_until_negative([1, 2]), (3, 2))
print("test_count_until_negative.py: all 4 checks passed")
