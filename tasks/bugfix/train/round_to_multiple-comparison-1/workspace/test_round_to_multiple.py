"""Checks for round_to_multiple.py. Run `python3 test_round_to_multiple.py`: it stops at the first failing check."""

from round_to_multiple import round_to_multiple


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('round_to_multiple(7, 5)', round_to_multiple(7, 5), 5)
check('round_to_multiple(8, 5)', round_to_multiple(8, 5), 10)
check('round_to_multiple(10, 5)', round_to_multiple(10, 5), 10)
check('round_to_multiple(5, 10)', round_to_multiple(5, 10), 10)
check('round_to_multiple(-7, 5)', round_to_multiple(-7, 5), -5)
check('round_to_multiple(0, 3)', round_to_multiple(0, 3), 0)
check('round_to_multiple(13, 4)', round_to_multiple(13, 4), 12)
print("test_round_to_multiple.py: all 7 checks passed")
