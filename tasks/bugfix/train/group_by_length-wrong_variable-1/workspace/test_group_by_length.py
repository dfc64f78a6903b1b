"""Checks for group_by_length.py. Run `python3 test_group_by_length.py`: it stops at the first failing check."""

from group_by_length import group_by_length


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("group_by_length(['hi', 'cat', 'to', 'dog', 'a'])", group_by_length(['hi', 'cat', 'to', 'dog', 'a']), {1: ['a'], 2: ['hi', 'to'], 3: ['cat', 'dog']})
check('group_by_length([])', group_by_length([]), {})
check("group_by_length(['', 'x'])", group_by_length(['', 'x']), {0: [''], 1: ['x']})
print("test_group_by_length.py: all 3 checks passed")
