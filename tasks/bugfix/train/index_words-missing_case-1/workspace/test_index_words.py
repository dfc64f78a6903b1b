"""Checks for index_words.py. Run `python3 test_index_words.py`: it stops at the first failing check."""

from index_words import index_words


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("index_words(['a b', 'b c', 'B b'])", index_words(['a b', 'b c', 'B b']), {'a': [1], 'b': [1, 2, 3], 'c': [2]})
check('index_words([])', index_words([]), {})
check("index_words(['', 'x'])", index_words(['', 'x']), {'x': [2]})
check("index_words(['go go go'])", index_words(['go go go']), {'go': [1]})
print("test_index_words.py: all 4 checks passed")
