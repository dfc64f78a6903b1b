"""Checks for count_overlapping.py. Run `python3 test_count_overlapping.py`: it stops at the first failing check."""

from count_overlapping import count_overlapping


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("count_overlapping('aaa', 'aa')", count_overlapping('aaa', 'aa'), 2)
check("count_overlapping('abcabc', 'abc')", count_overlapping('abcabc', 'abc'), 2)
check("count_overlapping('abc', 'd')", count_overlapping('abc', 'd'), 0)
check("count_overlapping('abc', '')", count_overlapping('abc', ''), 0)
check("count_overlapping('ab', 'ab')", count_overlapping('ab', 'ab'), 1)
check("count_overlapping('a', 'ab')", count_overlapping('a', 'ab'), 0)
print("test_count_overlapping.py: all 6 checks passed")
