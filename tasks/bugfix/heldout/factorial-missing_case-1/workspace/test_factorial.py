"""Checks for factorial.py. Run `python3 test_factorial.py`: it stops at the first failing check."""

from factorial import factorial


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('factorial(0)', factorial(0), 1)
check('factorial(1)', factorial(1), 1)
check('factorial(2)', factorial(2), 2)
check('factorial(5)', factorial(5), 120)
check('factorial(10)', factorial(10), 3628800)
check_raises('factorial(-1)', lambda: factorial(-1), ValueError)
print("test_factorial.py: all 6 checks passed")
