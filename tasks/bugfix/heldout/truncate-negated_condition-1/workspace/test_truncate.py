"""Checks for truncate.py. Run `python3 test_truncate.py`: it stops at the first failing check."""

from truncate import truncate


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("truncate('hello', 10)", truncate('hello', 10), 'hello')
check("truncate('hello', 5)", truncate('hello', 5), 'hello')
check("truncate('hello world', 8)", truncate('hello world', 8), 'hello...')
check("truncate('abcdef', 5)", truncate('abcdef', 5), 'ab...')
check("truncate('abcd', 3)", truncate('abcd', 3), '...')
print("test_truncate.py: all 5 checks passed")
