"""Checks for find_peak.py. Run `python3 test_find_peak.py`: it stops at the first failing check."""

from find_peak import find_peak


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('find_peak([1, 3, 2])', find_peak([1, 3, 2]), 1)
check('find_peak([5, 1, 2])', find_peak([5, 1, 2]), 0)
check('find_peak([1, 2, 3])', find_peak([1, 2, 3]), 2)
check('find_peak([2, 2, 2])', find_peak([2, 2, 2]), -1)
check('find_peak([7])', find_peak([7]), -1)
check('find_peak([1, 2, 2, 1, 5, 0])', find_peak([1, 2, 2, 1, 5, 0]), 4)
print("test_find_peak.py: all 6 checks passed")
