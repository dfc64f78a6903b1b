"""Checks for sliding_window_max.py. Run `python3 test_sliding_window_max.py`: it stops at the first failing check."""

from sliding_window_max import sliding_window_max


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3)', sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3), [3, 3, 5, 5, 6, 7])
check('sliding_window_max([4, 2], 2)', sliding_window_max([4, 2], 2), [4])
check('sliding_window_max([4, 2, 9], 1)', sliding_window_max([4, 2, 9], 1), [4, 2, 9])
check_raises('sliding_window_max([1, 2], 3)', lambda: sliding_window_max([1, 2], 3), ValueError)
check_raises('sliding_window_max([1, 2], 0)', lambda: sliding_window_max([1, 2], 0), ValueError)
print("test_sliding_window_max.py: all 5 checks passed")
