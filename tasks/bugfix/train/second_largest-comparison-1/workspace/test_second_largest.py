"""Checks for second_largest.py. Run `python3 test_second_largest.py`: it stops at the first failing check."""

from second_largest import second_largest


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('second_largest([3, 1, 4, 1, 5])', second_largest([3, 1, 4, 1, 5]), 4)
check('second_largest([5, 5, 5])', second_largest([5, 5, 5]), None)
check('second_largest([])', second_largest([]), None)
check('second_largest([2, 9])', second_largest([2, 9]), 2)
check('second_largest([9, 2])', second_largest([9, 2]), 2)
check('second_largest([-1, -3, -2])', second_largest([-1, -3, -2]), -2)
check('second_largest([7, 7, 3])', second_largest([7, 7, 3]), 3)
print("test_second_largest.py: all 7 checks passed")
