"""Checks for wrap_words.py. Run `python3 test_wrap_words.py`: it stops at the first failing check."""

from wrap_words import wrap_words


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("wrap_words('the quick brown fox', 10)", wrap_words('the quick brown fox', 10), ['the quick', 'brown fox'])
check("wrap_words('', 5)", wrap_words('', 5), [])
check("wrap_words('a b c', 3)", wrap_words('a b c', 3), ['a b', 'c'])
check("wrap_words('abcdefgh ij', 4)", wrap_words('abcdefgh ij', 4), ['abcdefgh', 'ij'])
check("wrap_words('one two', 7)", wrap_words('one two', 7), ['one two'])
print("test_wrap_words.py: all 5 checks passed")
