"""Checks for is_prime.py. Run `python3 test_is_prime.py`: it stops at the first failing check."""

from is_prime import is_prime


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('is_prime(-7)', is_prime(-7), False)
check('is_prime(0)', is_prime(0), False)
check('is_prime(1)', is_prime(1), False)
check('is_prime(2)', is_prime(2), True)
check('is_prime(3)', is_prime(3), True)
check('is_prime(4)', is_prime(4), False)
check('is_prime(9)', is_prime(9), False)
check('is_prime(25)', is_prime(25), False)
check('is_prime(29)', is_prime(29), True)
check('is_prime(49)', is_prime(49), False)
print("test_is_prime.py: all 10 checks passed")
