"""Checks for word_frequencies.py. Run `python3 test_word_frequencies.py`: it stops at the first failing check."""

from word_frequencies import word_frequencies


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("word_frequencies('The cat saw the dog.')", word_frequencies('The cat saw the dog.'), {'the': 2, 'cat': 1, 'saw': 1, 'dog': 1})
check("word_frequencies('')", word_frequencies(''), {})
check("word_frequencies('Hi! hi? HI , ok')", word_frequencies('Hi! hi? HI , ok'), {'hi': 3, 'ok': 1})
check("word_frequencies('a a a')", word_frequencies('a a a'), {'a': 3})
print("test_word_frequencies.py: all 4 checks passed")
