"""Checks for from_binary.py. Run `python3 test_from_binary.py`: it stops at the first failing check."""

from from_binary import from_binary


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("from_binary('1010')", from_binary('1010'), 10)
check("from_binary('')", from_binary(''), 0)
check("from_binary('1')", from_binary('1'), 1)
check("from_binary('0001')", from_binary('0001'), 1)
check("from_binary('11111111')", from_binary('11111111'), 255)
check_raises("from_binary('102')", lambda: from_binary('102'), ValueError)
print("test_from_binary.py: all 6 checks passed")
