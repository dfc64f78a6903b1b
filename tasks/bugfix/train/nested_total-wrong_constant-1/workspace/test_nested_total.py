"""Checks for nested_total.py. Run `python3 test_nested_total.py`: it stops at the first failing check."""

from nested_total import nested_total


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("nested_total({'a': 1, 'b': [2, 3, {'c': 4}]})", nested_total({'a': 1, 'b': [2, 3, {'c': 4}]}), 10)
check('nested_total([])', nested_total([]), 0)
check("nested_total({'x': 'text', 'y': 5})", nested_total({'x': 'text', 'y': 5}), 5)
check('nested_total([True, 1, False])', nested_total([True, 1, False]), 1)
check('nested_total(7)', nested_total(7), 7)
check("nested_total([[1.5], {'z': [2.5]}])", nested_total([[1.5], {'z': [2.5]}]), 4.0)
print("test_nested_total.py: all 6 checks passed")
