"""Checks for collatz_steps.py. Run `python3 test_collatz_steps.py`: it stops at the first failing check."""

from collatz_steps import collatz_steps


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('collatz_steps(1)', collatz_steps(1), 0)
check('collatz_steps(2)', collatz_steps(2), 1)
check('collatz_steps(3)', collatz_steps(3), 7)
check('collatz_steps(6)', collatz_steps(6), 8)
check('collatz_steps(27)', collatz_steps(27), 111)
print("test_collatz_steps.py: all 5 checks passed")
