"""Checks for merge_sorted.py. Run `python3 test_merge_sorted.py`: it stops at the first failing check."""

from merge_sorted import merge_sorted


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('merge_sorted([1, 3, 5], [2, 4, 6])', merge_sorted([1, 3, 5], [2, 4, 6]), [1, 2, 3, 4, 5, 6])
check('merge_sorted([], [1, 2])', merge_sorted([], [1, 2]), [1, 2])
check('merge_sorted([1, 2], [])', merge_sorted([1, 2], []), [1, 2])
check('merge_sorted([1, 1], [1])', merge_sorted([1, 1], [1]), [1, 1, 1])
check('merge_sorted([5, 6], [1, 2])', merge_sorted([5, 6], [1, 2]), [1, 2, 5, 6])
check('merge_sorted([1, 9], [2, 3, 4])', merge_sorted([1, 9], [2, 3, 4]), [1, 2, 3, 4, 9])
print("test_merge_sorted.py: all 6 checks passed")
