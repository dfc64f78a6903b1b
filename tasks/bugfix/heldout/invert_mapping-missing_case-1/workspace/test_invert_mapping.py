"""Checks for invert_mapping.py. Run `python3 test_invert_mapping.py`: it stops at the first failing check."""

from invert_mapping import invert_mapping


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("invert_mapping({'a': 1, 'b': 2, 'c': 1})", invert_mapping({'a': 1, 'b': 2, 'c': 1}), {1: ['a', 'c'], 2: ['b']})
check('invert_mapping({})', invert_mapping({}), {})
check("invert_mapping({'z': 0, 'y': 0, 'x': 0})", invert_mapping({'z': 0, 'y': 0, 'x': 0}), {0: ['x', 'y', 'z']})
check("invert_mapping({1: 'one'})", invert_mapping({1: 'one'}), {'one': [1]})
print("test_invert_mapping.py: all 4 checks passed")
