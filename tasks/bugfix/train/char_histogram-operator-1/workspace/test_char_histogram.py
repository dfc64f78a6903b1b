"""Checks for char_histogram.py. Run `python3 test_char_histogram.py`: it stops at the first failing check."""

from char_histogram import char_histogram


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("char_histogram('Hello!')", char_histogram('Hello!'), {'e': 1, 'h': 1, 'l': 2, 'o': 1})
check("char_histogram('')", char_histogram(''), {})
check("char_histogram('a A 1')", char_histogram('a A 1'), {'a': 2})
check("char_histogram('cab')", char_histogram('cab'), {'a': 1, 'b': 1, 'c': 1})
print("test_char_histogram.py: all 4 checks passed")
