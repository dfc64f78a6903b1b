"""Checks for count_in_range.py. Run `python3 test_count_in_range.py`: it stops at the first failing check."""

from count_in_range import count_in_range


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('count_in_range([1, 5, 10, 15], 5, 10)', count_in_range([1, 5, 10, 15], 5, 10), 2)
check('count_in_range([], 0, 1)', count_in_range([], 0, 1), 0)
check('count_in_range([3, 3], 3, 3)', count_in_range([3, 3], 3, 3), 2)
check('count_in_range([-2, 0, 2], -1, 1)', count_in_range([-2, 0, 2], -1, 1), 1)
check('count_in_range([1, 2, 3], 4, 9)', count_in_range([1, 2, 3], 4, 9), 0)
print("test_count_in_range.py: all 5 checks passed")
