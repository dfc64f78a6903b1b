"""Checks for transpose.py. Run `python3 test_transpose.py`: it stops at the first failing check."""

from transpose import transpose


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('transpose([[1, 2, 3], [4, 5, 6]])', transpose([[1, 2, 3], [4, 5, 6]]), [[1, 4], [2, 5], [3, 6]])
check('transpose([])', transpose([]), [])
check('transpose([[7]])', transpose([[7]]), [[7]])
check('transpose([[1], [2], [3]])', transpose([[1], [2], [3]]), [[1, 2, 3]])
print("test_transpose.py: all 4 checks passed")
