"""Checks for top_k.py. Run `python3 test_top_k.py`: it stops at the first failing check."""

from top_k import top_k


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("top_k({'a': 5, 'b': 9, 'c': 7}, 2)", top_k({'a': 5, 'b': 9, 'c': 7}, 2), ['b', 'c'])
check("top_k({'x': 1, 'y': 1, 'w': 1}, 2)", top_k({'x': 1, 'y': 1, 'w': 1}, 2), ['w', 'x'])
check('top_k({}, 3)', top_k({}, 3), [])
check("top_k({'a': 2, 'b': 3}, 5)", top_k({'a': 2, 'b': 3}, 5), ['b', 'a'])
check("top_k({'a': 2}, 0)", top_k({'a': 2}, 0), [])
print("test_top_k.py: all 5 checks passed")
