"""Checks for dedupe.py. Run `python3 test_dedupe.py`: it stops at the first failing check."""

from dedupe import dedupe


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('dedupe([3, 1, 3, 2, 1])', dedupe([3, 1, 3, 2, 1]), [3, 1, 2])
check('dedupe([])', dedupe([]), [])
check("dedupe(['a', 'a'])", dedupe(['a', 'a']), ['a'])
check('dedupe([1, 2, 3])', dedupe([1, 2, 3]), [1, 2, 3])
print("test_dedupe.py: all 4 checks passed")
