"""Checks for flatten_once.py. Run `python3 test_flatten_once.py`: it stops at the first failing check."""

from flatten_once import flatten_once


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('flatten_once([[1, 2], 3, [4]])', flatten_once([[1, 2], 3, [4]]), [1, 2, 3, 4])
check('flatten_once([])', flatten_once([]), [])
check('flatten_once([[1, [2]], []])', flatten_once([[1, [2]], []]), [1, [2]])
check("flatten_once(['ab', [None]])", flatten_once(['ab', [None]]), ['ab', None])
print("test_flatten_once.py: all 4 checks passed")
