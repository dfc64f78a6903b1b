"""Checks for edit_distance.py. Run `python3 test_edit_distance.py`: it stops at the first failing check."""

from edit_distance import edit_distance


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("edit_distance('kitten', 'sitting')", edit_distance('kitten', 'sitting'), 3)
check("edit_distance('', 'abc')", edit_distance('', 'abc'), 3)
check("edit_distance('abc', '')", edit_distance('abc', ''), 3)
check("edit_distance('same', 'same')", edit_distance('same', 'same'), 0)
check("edit_distance('flaw', 'lawn')", edit_distance('flaw', 'lawn'), 2)
check("edit_distance('a', 'b')", edit_distance('a', 'b'), 1)
print("test_edit_distance.py: all 6 checks passed")
