"""Checks for moving_average.py. Run `python3 test_moving_average.py`: it stops at the first failing check."""

from moving_average import moving_average


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('moving_average([1, 2, 3, 4], 2)', moving_average([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])
check('moving_average([1, 2, 3], 3)', moving_average([1, 2, 3], 3), [2.0])
check('moving_average([1, 2], 3)', moving_average([1, 2], 3), [])
check('moving_average([10, 20, 30, 40, 50], 1)', moving_average([10, 20, 30, 40, 50], 1), [10.0, 20.0, 30.0, 40.0, 50.0])
check('moving_average([1, 2, 2], 2)', moving_average([1, 2, 2], 2), [1.5, 2.0])
check_raises('moving_average([1], 0)', lambda: moving_average([1], 0), ValueError)
print("test_moving_average.py: all 6 checks passed")
