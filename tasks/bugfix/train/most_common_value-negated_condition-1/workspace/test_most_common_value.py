"""Checks for most_common_value.py. Run `python3 test_most_common_value.py`: it stops at the first failing check."""

from most_common_value import most_common_value


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("most_common_value({'a': 'x', 'b': 'y', 'c': 'x'})", most_common_value({'a': 'x', 'b': 'y', 'c': 'x'}), 'x')
check('most_common_value({})', most_common_value({}), None)
check("most_common_value({'a': 1, 'b': 2})", most_common_value({'a': 1, 'b': 2}), 1)
check("most_common_value({'a': 1, 'b': 2, 'c': 2})", most_common_value({'a': 1, 'b': 2, 'c': 2}), 2)
check("most_common_value({'k': 0})", most_common_value({'k': 0}), 0)
print("test_most_common_value.py: all 5 checks passed")
