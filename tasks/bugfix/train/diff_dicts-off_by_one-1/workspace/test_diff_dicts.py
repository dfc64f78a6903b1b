"""Checks for diff_dicts.py. Run `python3 test_diff_dicts.py`: it stops at the first failing check."""

from diff_dicts import diff_dicts


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("diff_dicts({'a': 1, 'b': 2}, {'b': 3, 'c': 4})", diff_dicts({'a': 1, 'b': 2}, {'b': 3, 'c': 4}), (['c'], ['a'], ['b']))
check('diff_dicts({}, {})', diff_dicts({}, {}), ([], [], []))
check("diff_dicts({'x': 1}, {'x': 1})", diff_dicts({'x': 1}, {'x': 1}), ([], [], []))
check("diff_dicts({'z': 0, 'y': 0}, {})", diff_dicts({'z': 0, 'y': 0}, {}), ([], ['y', 'z'], []))
check("diff_dicts({'k': 1, 'j': 1}, {'k': 2, 'j': 2})", diff_dicts({'k': 1, 'j': 1}, {'k': 2, 'j': 2}), ([], [], ['j', 'k']))
print("test_diff_dicts.py: all 5 checks passed")
