"""Checks for kth_smallest.py. Run `python3 test_kth_smallest.py`: it stops at the first failing check."""

from kth_smallest import kth_smallest


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('kth_smallest([7, 2, 9, 4], 1)', kth_smallest([7, 2, 9, 4], 1), 2)
check('kth_smallest([7, 2, 9, 4], 2)', kth_smallest([7, 2, 9, 4], 2), 4)
check('kth_smallest([7, 2, 9, 4], 4)', kth_smallest([7, 2, 9, 4], 4), 9)
check('kth_smallest([3, 3, 1], 3)', kth_smallest([3, 3, 1], 3), 3)
check_raises('kth_smallest([1], 2)', lambda: kth_smallest([1], 2), IndexError)
check_raises('kth_smallest([1], 0)', lambda: kth_smallest([1], 0), IndexError)
print("test_kth_smallest.py: all 6 checks passed")
