"""Checks for pairwise_differences.py. Run `python3 test_pairwise_differences.py`: it stops at the first failing check."""

from pairwise_differences import pairwise_differences


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('pairwise_differences([1, 4, 9])', pairwise_differences([1, 4, 9]), [3, 5])
check('pairwise_differences([5])', pairwise_differences([5]), [])
check('pairwise_differences([])', pairwise_differences([]), [])
check('pairwise_differences([3, 1, 1, 4])', pairwise_differences([3, 1, 1, 4]), [-2, 0, 3])
print("test_pairwise_differences.py: all 4 checks passed")
