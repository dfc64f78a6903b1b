"""Checks for percent_change.py. Run `python3 test_percent_change.py`: it stops at the first failing check."""

from percent_change import percent_change


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('percent_change(100, 150)', percent_change(100, 150), 50.0)
check('percent_change(200, 150)', percent_change(200, 150), -25.0)
check('percent_change(80, 80)', percent_change(80, 80), 0.0)
check('percent_change(3, 4)', percent_change(3, 4), 33.3)
check('percent_change(-50, -25)', percent_change(-50, -25), 50.0)
check_raises('percent_change(0, 5)', lambda: percent_change(0, 5), ValueError)
print("test_percent_change.py: all 6 checks passed")
