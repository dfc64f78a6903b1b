"""Checks for is_anagram.py. Run `python3 test_is_anagram.py`: it stops at the first failing check."""

from is_anagram import is_anagram


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("is_anagram('listen', 'silent')", is_anagram('listen', 'silent'), True)
check("is_anagram('Dormitory', 'dirty room')", is_anagram('Dormitory', 'dirty room'), True)
check("is_anagram('aab', 'abb')", is_anagram('aab', 'abb'), False)
check("is_anagram('abc', 'abcd')", is_anagram('abc', 'abcd'), False)
check("is_anagram('', '')", is_anagram('', ''), True)
check("is_anagram('night', 'thing')", is_anagram('night', 'thing'), True)
print("test_is_anagram.py: all 6 checks passed")
