"""Checks for first_unique_char.py. Run `python3 test_first_unique_char.py`: it stops at the first failing check."""

from first_unique_char import first_unique_char


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("first_unique_char('leetcode')", first_unique_char('leetcode'), 0)
check("first_unique_char('loveleetcode')", first_unique_char('loveleetcode'), 2)
check("first_unique_char('aabb')", first_unique_char('aabb'), -1)
check("first_unique_char('')", first_unique_char(''), -1)
check("first_unique_char('aabbc')", first_unique_char('aabbc'), 4)
print("test_first_unique_char.py: all 5 checks passed")
