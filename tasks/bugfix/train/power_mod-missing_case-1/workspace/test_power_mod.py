"""Checks for power_mod.py. Run `python3 test_power_mod.py`: it stops at the first failing check."""

from power_mod import power_mod


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('power_mod(2, 10, 1000)', power_mod(2, 10, 1000), 24)
check('power_mod(3, 0, 7)', power_mod(3, 0, 7), 1)
check('power_mod(5, 3, 13)', power_mod(5, 3, 13), 8)
check('power_mod(7, 1, 5)', power_mod(7, 1, 5), 2)
check('power_mod(10, 5, 1)', power_mod(10, 5, 1), 0)
check('power_mod(4, 13, 497)', power_mod(4, 13, 497), 445)
print("test_power_mod.py: all 6 checks passed")
