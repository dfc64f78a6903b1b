"""Checks for pad_left.py. Run `python3 test_pad_left.py`: it stops at the first failing check."""

from pad_left import pad_left


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("pad_left('42', 5)", pad_left('42', 5), '   42')
check("pad_left('42', 5, '0')", pad_left('42', 5, '0'), '00042')
check("pad_left('hello', 3)", pad_left('hello', 3), 'hello')
check("pad_left('abc', 3)", pad_left('abc', 3), 'abc')
check("pad_left('', 2, '*')", pad_left('', 2, '*'), '**')
check_raises("pad_left('x', 4, '--')", lambda: pad_left('x', 4, '--'), ValueError)
print("test_pad_left.py: all 6 checks passed")
