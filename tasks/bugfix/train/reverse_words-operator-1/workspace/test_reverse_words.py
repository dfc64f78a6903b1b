"""Checks for reverse_words.py. Run `python3 test_reverse_words.py`: it stops at the first failing check."""

from reverse_words import reverse_words


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("reverse_words('one two three')", reverse_words('one two three'), 'three two one')
check("reverse_words('  hello   world ')", reverse_words('  hello   world '), 'world hello')
check("reverse_words('single')", reverse_words('single'), 'single')
check("reverse_words('')", reverse_words(''), '')
check("reverse_words('a b')", reverse_words('a b'), 'b a')
print("test_reverse_words.py: all 5 checks passed")
