"""Checks for interleave.py. Run `python3 test_interleave.py`: it stops at the first failing check."""

from interleave import interleave


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("interleave([1, 2, 3], ['x'])", interleave([1, 2, 3], ['x']), [1, 'x', 2, 3])
check('interleave([], [1, 2])', interleave([], [1, 2]), [1, 2])
check('interleave([1, 2], [3, 4])', interleave([1, 2], [3, 4]), [1, 3, 2, 4])
check("interleave(['a'], ['b', 'c', 'd'])", interleave(['a'], ['b', 'c', 'd']), ['a', 'b', 'c', 'd'])
check('interleave([], [])', interleave([], []), [])
print("test_interleave.py: all 5 checks passed")
