"""Checks for int_sqrt.py. Run `python3 test_int_sqrt.py`: it stops at the first failing check."""

from int_sqrt import int_sqrt


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('int_sqrt(0)', int_sqrt(0), 0)
check('int_sqrt(1)', int_sqrt(1), 1)
check('int_sqrt(3)', int_sqrt(3), 1)
check('int_sqrt(4)', int_sqrt(4), 2)
check('int_sqrt(15)', int_sqrt(15), 3)
check('int_sqrt(16)', int_sqrt(16), 4)
check('int_sqrt(1000000)', int_sqrt(1000000), 1000)
check_raises('int_sqrt(-4)', lambda: int_sqrt(-4), ValueError)
print("test_int_sqrt.py: all 8 checks passed")
