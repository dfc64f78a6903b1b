"""Checks for primes_up_to.py. Run `python3 test_primes_up_to.py`: it stops at the first failing check."""

from primes_up_to import primes_up_to


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('primes_up_to(10)', primes_up_to(10), [2, 3, 5, 7])
check('primes_up_to(1)', primes_up_to(1), [])
check('primes_up_to(2)', primes_up_to(2), [2])
check('primes_up_to(25)', primes_up_to(25), [2, 3, 5, 7, 11, 13, 17, 19, 23])
check('primes_up_to(9)', primes_up_to(9), [2, 3, 5, 7])
check('primes_up_to(49)[-1]', primes_up_to(49)[-1], 47)
print("test_primes_up_to.py: all 6 checks passed")
