"""Checks for mean_ignoring_none.py. Run `python3 test_mean_ignoring_none.py`: it stops at the first failing check."""

from mean_ignoring_none import mean_ignoring_none


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('mean_ignoring_none([1, 2, 3])', mean_ignoring_none([1, 2, 3]), 2.0)
check('mean_ignoring_none([None, 4, None, 6])', mean_ignoring_none([None, 4, None, 6]), 5.0)
check('mean_ignoring_none([])', mean_ignoring_none([]), None)
check('mean_ignoring_none([None, None])', mean_ignoring_none([None, None]), None)
check('mean_ignoring_none([0, None, 3])', mean_ignoring_none([0, None, 3]), 1.5)
print("test_mean_ignoring_none.py: all 5 checks passed")
