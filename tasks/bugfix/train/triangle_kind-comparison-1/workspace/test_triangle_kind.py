"""Checks for triangle_kind.py. Run `python3 test_triangle_kind.py`: it stops at the first failing check."""

from triangle_kind import triangle_kind


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('triangle_kind(3, 3, 3)', triangle_kind(3, 3, 3), 'equilateral')
check('triangle_kind(3, 4, 5)', triangle_kind(3, 4, 5), 'scalene')
check('triangle_kind(5, 5, 8)', triangle_kind(5, 5, 8), 'isosceles')
check('triangle_kind(8, 5, 5)', triangle_kind(8, 5, 5), 'isosceles')
check('triangle_kind(5, 8, 8)', triangle_kind(5, 8, 8), 'isosceles')
check('triangle_kind(1, 2, 3)', triangle_kind(1, 2, 3), 'invalid')
check('triangle_kind(0, 1, 1)', triangle_kind(0, 1, 1), 'invalid')
check('triangle_kind(2, 3, 4)', triangle_kind(2, 3, 4), 'scalene')
print("test_triangle_kind.py: all 8 checks passed")
