"""Checks for median.py. Run `python3 test_median.py`: it stops at the first failing check."""

from median import median


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('median([3])', median([3]), 3)
check('median([3, 1, 2])', median([3, 1, 2]), 2)
check('median([4, 1, 3, 2])', median([4, 1, 3, 2]), 2.5)
check('median([5, 5, 1, 9])', median([5, 5, 1, 9]), 5.0)
check('median([10, 2])', median([10, 2]), 6.0)
check_raises('median([])', lambda: median([]), ValueError)
print("test_median.py: all 6 checks passed")
