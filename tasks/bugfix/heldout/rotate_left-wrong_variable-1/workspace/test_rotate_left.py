"""Checks for rotate_left.py. Run `python3 test_rotate_left.py`: it stops at the first failing check."""

from rotate_left import rotate_left


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('rotate_left([1, 2, 3, 4], 1)', rotate_left([1, 2, 3, 4], 1), [2, 3, 4, 1])
check('rotate_left([1, 2, 3, 4], 0)', rotate_left([1, 2, 3, 4], 0), [1, 2, 3, 4])
check('rotate_left([1, 2, 3, 4], 6)', rotate_left([1, 2, 3, 4], 6), [3, 4, 1, 2])
check('rotate_left([1, 2, 3], -1)', rotate_left([1, 2, 3], -1), [3, 1, 2])
check('rotate_left([], 3)', rotate_left([], 3), [])
print("test_rotate_left.py: all 5 checks passed")
