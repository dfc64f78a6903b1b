"""Checks for index_of_max.py. Run `python3 test_index_of_max.py`: it stops at the first failing check."""

from index_of_max import index_of_max


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('index_of_max([3, 9, 2])', index_of_max([3, 9, 2]), 1)
check('index_of_max([])', index_of_max([]), -1)
check('index_of_max([7])', index_of_max([7]), 0)
check('index_of_max([1, 5, 5])', index_of_max([1, 5, 5]), 1)
check('index_of_max([-4, -2, -9])', index_of_max([-4, -2, -9]), 1)
check('index_of_max([1, 2, 3, 8])', index_of_max([1, 2, 3, 8]), 3)
print("test_index_of_max.py: all 6 checks passed")
