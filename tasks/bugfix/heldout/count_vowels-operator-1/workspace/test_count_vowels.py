"""Checks for count_vowels.py. Run `python3 test_count_vowels.py`: it stops at the first failing check."""

from count_vowels import count_vowels


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("count_vowels('hello')", count_vowels('hello'), 2)
check("count_vowels('AEIOU xyz')", count_vowels('AEIOU xyz'), 5)
check("count_vowels('')", count_vowels(''), 0)
check("count_vowels('rhythm')", count_vowels('rhythm'), 0)
check("count_vowels('Queue')", count_vowels('Queue'), 4)
print("test_count_vowels.py: all 5 checks passed")
