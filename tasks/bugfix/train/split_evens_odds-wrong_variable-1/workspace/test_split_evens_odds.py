"""Checks for split_evens_odds.py. Run `python3 test_split_evens_odds.py`: it stops at the first failing check."""

from split_evens_odds import split_evens_odds


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('split_evens_odds([1, 2, 3, 4])', split_evens_odds([1, 2, 3, 4]), ([2, 4], [1, 3]))
check('split_evens_odds([])', split_evens_odds([]), ([], []))
check('split_evens_odds([-3, 0, 7])', split_evens_odds([-3, 0, 7]), ([0], [-3, 7]))
check('split_evens_odds([2, 2])', split_evens_odds([2, 2]), ([2, 2], []))
print("test_split_evens_odds.py: all 4 checks passed")
