"""Checks for gcd_steps.py. Run `python3 test_gcd_steps.py`: it stops at the first failing check."""

from gcd_steps import gcd_steps


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('gcd_steps(48, 18)', gcd_steps(48, 18), (6, 3))
check('gcd_steps(7, 0)', gcd_steps(7, 0), (7, 0))
check('gcd_steps(0, 5)', gcd_steps(0, 5), (5, 1))
check('gcd_steps(0, 0)', gcd_steps(0, 0), (0, 0))
check('gcd_steps(17, 5)', gcd_steps(17, 5), (1, 3))
check('gcd_steps(18, 48)', gcd_steps(18, 48), (6, 4))
print("test_gcd_steps.py: all 6 checks passed")
