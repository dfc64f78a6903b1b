"""Checks for caesar_shift.py. Run `python3 test_caesar_shift.py`: it stops at the first failing check."""

from caesar_shift import caesar_shift


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("caesar_shift('abc', 1)", caesar_shift('abc', 1), 'bcd')
check("caesar_shift('xyz', 3)", caesar_shift('xyz', 3), 'abc')
check("caesar_shift('Hello, World!', 5)", caesar_shift('Hello, World!', 5), 'Mjqqt, Btwqi!')
check("caesar_shift('abc', -1)", caesar_shift('abc', -1), 'zab')
check("caesar_shift('Zz', 1)", caesar_shift('Zz', 1), 'Aa')
check("caesar_shift('same', 26)", caesar_shift('same', 26), 'same')
print("test_caesar_shift.py: all 6 checks passed")
