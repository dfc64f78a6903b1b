"""Checks for cumulative_max.py. Run `python3 test_cumulative_max.py`: it stops at the first failing check."""

from cumulative_max import cumulative_max


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('cumulative_max([1, 3, 2, 5, 4])', cumulative_max([1, 3, 2, 5, 4]), [1, 3, 3, 5, 5])
check('cumulative_max([])', cumulative_max([]), [])
check('cumulative_max([-5, -7, -1])', cumulative_max([-5, -7, -1]), [-5, -5, -1])
check('cumulative_max([0, 0])', cumulative_max([0, 0]), [0, 0])
print("test_cumulative_max.py: all 4 checks passed")
