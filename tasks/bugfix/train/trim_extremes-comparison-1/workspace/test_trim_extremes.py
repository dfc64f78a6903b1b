"""Checks for trim_extremes.py. Run `python3 test_trim_extremes.py`: it stops at the first failing check."""

from trim_extremes import trim_extremes


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('trim_extremes([5, 1, 3, 9, 4])', trim_extremes([5, 1, 3, 9, 4]), [5, 3, 4])
check('trim_extremes([1, 2])', trim_extremes([1, 2]), [])
check('trim_extremes([2, 2, 2])', trim_extremes([2, 2, 2]), [2])
check('trim_extremes([1, 1, 5, 5])', trim_extremes([1, 1, 5, 5]), [1, 5])
check('trim_extremes([3, 7, 5])', trim_extremes([3, 7, 5]), [5])
print("test_trim_extremes.py: all 5 checks passed")
