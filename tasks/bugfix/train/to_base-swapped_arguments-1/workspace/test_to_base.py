"""Checks for to_base.py. Run `python3 test_to_base.py`: it stops at the first failing check."""

from to_base import to_base


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('to_base(10, 2)', to_base(10, 2), '1010')
check('to_base(255, 16)', to_base(255, 16), 'ff')
check('to_base(0, 7)', to_base(0, 7), '0')
check('to_base(-5, 2)', to_base(-5, 2), '-101')
check('to_base(35, 36)', to_base(35, 36), 'z')
check('to_base(8, 8)', to_base(8, 8), '10')
check_raises('to_base(3, 1)', lambda: to_base(3, 1), ValueError)
print("test_to_base.py: all 7 checks passed")
