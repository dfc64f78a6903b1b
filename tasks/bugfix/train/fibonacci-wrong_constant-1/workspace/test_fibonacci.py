"""Checks for fibonacci.py. Run `python3 test_fibonacci.py`: it stops at the first failing check."""

from fibonacci import fibonacci


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('fibonacci(0)', fibonacci(0), 0)
check('fibonacci(1)', fibonacci(1), 1)
check('fibonacci(2)', fibonacci(2), 1)
check('fibonacci(7)', fibonacci(7), 13)
check('fibonacci(20)', fibonacci(20), 6765)
print("test_fibonacci.py: all 5 checks passed")
