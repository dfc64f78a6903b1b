"""Checks for int_to_roman.py. Run `python3 test_int_to_roman.py`: it stops at the first failing check."""

from int_to_roman import int_to_roman


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('int_to_roman(1)', int_to_roman(1), 'I')
check('int_to_roman(4)', int_to_roman(4), 'IV')
check('int_to_roman(9)', int_to_roman(9), 'IX')
check('int_to_roman(14)', int_to_roman(14), 'XIV')
check('int_to_roman(1994)', int_to_roman(1994), 'MCMXCIV')
check('int_to_roman(3999)', int_to_roman(3999), 'MMMCMXCIX')
check_raises('int_to_roman(0)', lambda: int_to_roman(0), ValueError)
check_raises('int_to_roman(4000)', lambda: int_to_roman(4000), ValueError)
print("test_int_to_roman.py: all 8 checks passed")
