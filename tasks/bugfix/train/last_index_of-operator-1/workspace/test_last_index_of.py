"""Checks for last_index_of.py. Run `python3 test_last_index_of.py`: it stops at the first failing check."""

from last_index_of import last_index_of


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('last_index_of([1, 2, 1, 3], 1)', last_index_of([1, 2, 1, 3], 1), 2)
check('last_index_of([1, 2, 3], 4)', last_index_of([1, 2, 3], 4), -1)
check('last_index_of([], 1)', last_index_of([], 1), -1)
check('last_index_of([5, 1, 2], 5)', last_index_of([5, 1, 2], 5), 0)
check('last_index_of([1, 2, 3], 3)', last_index_of([1, 2, 3], 3), 2)
print("test_last_index_of.py: all 5 checks passed")
