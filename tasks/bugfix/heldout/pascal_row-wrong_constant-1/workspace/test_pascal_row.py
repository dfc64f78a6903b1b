"""Checks for pascal_row.py. Run `python3 test_pascal_row.py`: it stops at the first failing check."""

from pascal_row import pascal_row


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('pascal_row(0)', pascal_row(0), [1])
check('pascal_row(1)', pascal_row(1), [1, 1])
check('pascal_row(3)', pascal_row(3), [1, 3, 3, 1])
check('pascal_row(5)', pascal_row(5), [1, 5, 10, 10, 5, 1])
print("test_pascal_row.py: all 4 checks passed")
