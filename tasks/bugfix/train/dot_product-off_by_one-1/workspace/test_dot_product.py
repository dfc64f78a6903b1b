"""Checks for dot_product.py. Run `python3 test_dot_product.py`: it stops at the first failing check."""

from dot_product import dot_product


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('dot_product([1, 2, 3], [4, 5, 6])', dot_product([1, 2, 3], [4, 5, 6]), 32)
check('dot_product([], [])', dot_product([], []), 0)
check('dot_product([2], [-3])', dot_product([2], [-3]), -6)
check('dot_product([1, 0, 2], [0, 7, 1])', dot_product([1, 0, 2], [0, 7, 1]), 2)
check_raises('dot_product([1], [1, 2])', lambda: dot_product([1], [1, 2]), ValueError)
print("test_dot_product.py: all 5 checks passed")
