"""Checks for manhattan_distance.py. Run `python3 test_manhattan_distance.py`: it stops at the first failing check."""

from manhattan_distance import manhattan_distance


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('manhattan_distance((0, 0), (3, 4))', manhattan_distance((0, 0), (3, 4)), 7)
check('manhattan_distance((1, 1), (1, 1))', manhattan_distance((1, 1), (1, 1)), 0)
check('manhattan_distance((-2, 5), (3, -1))', manhattan_distance((-2, 5), (3, -1)), 11)
check('manhattan_distance((4, 0), (0, 0))', manhattan_distance((4, 0), (0, 0)), 4)
check('manhattan_distance((0, 2), (0, 9))', manhattan_distance((0, 2), (0, 9)), 7)
print("test_manhattan_distance.py: all 5 checks passed")
