"""Checks for clamp.py. Run `python3 test_clamp.py`: it stops at the first failing check."""

from clamp import clamp


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('clamp(5, 0, 10)', clamp(5, 0, 10), 5)
check('clamp(-3, 0, 10)', clamp(-3, 0, 10), 0)
check('clamp(12, 0, 10)', clamp(12, 0, 10), 10)
check('clamp(0, 0, 10)', clamp(0, 0, 10), 0)
check('clamp(10, 0, 10)', clamp(10, 0, 10), 10)
check('clamp(4, 4, 4)', clamp(4, 4, 4), 4)
check_raises('clamp(1, 5, 2)', lambda: clamp(1, 5, 2), ValueError)
print("test_clamp.py: all 7 checks passed")
