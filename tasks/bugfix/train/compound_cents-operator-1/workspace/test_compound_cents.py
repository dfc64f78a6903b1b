"""Checks for compound_cents.py. Run `python3 test_compound_cents.py`: it stops at the first failing check."""

from compound_cents import compound_cents


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('compound_cents(10000, 5, 0)', compound_cents(10000, 5, 0), 10000)
check('compound_cents(10000, 5, 1)', compound_cents(10000, 5, 1), 10500)
check('compound_cents(10000, 5, 2)', compound_cents(10000, 5, 2), 11025)
check('compound_cents(999, 10, 3)', compound_cents(999, 10, 3), 1327)
check('compound_cents(5000, 0, 4)', compound_cents(5000, 0, 4), 5000)
print("test_compound_cents.py: all 5 checks passed")
