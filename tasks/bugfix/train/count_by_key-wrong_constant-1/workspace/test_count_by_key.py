"""Checks for count_by_key.py. Run `python3 test_count_by_key.py`: it stops at the first failing check."""

from count_by_key import count_by_key


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("count_by_key([{'t': 'a'}, {'t': 'b'}, {'t': 'a'}], 't')", count_by_key([{'t': 'a'}, {'t': 'b'}, {'t': 'a'}], 't'), {'a': 2, 'b': 1})
check("count_by_key([], 't')", count_by_key([], 't'), {})
check("count_by_key([{'t': 1}, {}], 't')", count_by_key([{'t': 1}, {}], 't'), {1: 1, None: 1})
check("count_by_key([{'u': 1}], 't')", count_by_key([{'u': 1}], 't'), {None: 1})
print("test_count_by_key.py: all 4 checks passed")
