"""Checks for merge_counts.py. Run `python3 test_merge_counts.py`: it stops at the first failing check."""

from merge_counts import merge_counts


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("merge_counts({'x': 1, 'y': 2}, {'y': 3, 'z': 4})", merge_counts({'x': 1, 'y': 2}, {'y': 3, 'z': 4}), {'x': 1, 'y': 5, 'z': 4})
check('merge_counts({}, {})', merge_counts({}, {}), {})
check("merge_counts({'x': 2}, {'x': -2, 'w': 1})", merge_counts({'x': 2}, {'x': -2, 'w': 1}), {'w': 1})
check("merge_counts({'a': 1}, {})", merge_counts({'a': 1}, {}), {'a': 1})
check("merge_counts({}, {'b': 5})", merge_counts({}, {'b': 5}), {'b': 5})
print("test_merge_counts.py: all 5 checks passed")
