"""Checks for is_sorted.py. Run `python3 test_is_sorted.py`: it stops at the first failing check."""

from is_sorted import is_sorted


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('is_sorted([1, 2, 2, 3])', is_sorted([1, 2, 2, 3]), True)
check('is_sorted([1, 3, 2])', is_sorted([1, 3, 2]), False)
check('is_sorted([])', is_sorted([]), True)
check('is_sorted([5])', is_sorted([5]), True)
check('is_sorted([3, 2, 2], descending=True)', is_sorted([3, 2, 2], descending=True), True)
check('is_sorted([3, 4], descending=True)', is_sorted([3, 4], descending=True), False)
check('is_sorted([2, 1])', is_sorted([2, 1]), False)
print("test_is_sorted.py: all 7 checks passed")
