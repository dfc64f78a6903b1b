"""Checks for staircase_ways.py. Run `python3 test_staircase_ways.py`: it stops at the first failing check."""

from staircase_ways import staircase_ways


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('staircase_ways(0)', staircase_ways(0), 1)
check('staircase_ways(1)', staircase_ways(1), 1)
check('staircase_ways(2)', staircase_ways(2), 2)
check('staircase_ways(3)', staircase_ways(3), 3)
check('staircase_ways(5)', staircase_ways(5), 8)
check('staircase_ways(-1)', staircase_ways(-1), 0)
check('staircase_ways(10)', staircase_ways(10), 89)
print("test_staircase_ways.py: all 7 checks passed")
