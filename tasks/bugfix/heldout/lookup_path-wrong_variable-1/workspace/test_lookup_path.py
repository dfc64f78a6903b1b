"""Checks for lookup_path.py. Run `python3 test_lookup_path.py`: it stops at the first failing check."""

from lookup_path import lookup_path


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("lookup_path({'a': {'b': 1}}, 'a.b')", lookup_path({'a': {'b': 1}}, 'a.b'), 1)
check("lookup_path({'a': {'b': 1}}, 'a.c')", lookup_path({'a': {'b': 1}}, 'a.c'), None)
check("lookup_path({'a': {'b': 1}}, 'a.c', 0)", lookup_path({'a': {'b': 1}}, 'a.c', 0), 0)
check("lookup_path({'a': 5}, 'a.b', 'none')", lookup_path({'a': 5}, 'a.b', 'none'), 'none')
check("lookup_path({'a': {'b': {'c': [1]}}}, 'a.b.c')", lookup_path({'a': {'b': {'c': [1]}}}, 'a.b.c'), [1])
check("lookup_path({'x': 2}, 'x')", lookup_path({'x': 2}, 'x'), 2)
print("test_lookup_path.py: all 6 checks passed")
