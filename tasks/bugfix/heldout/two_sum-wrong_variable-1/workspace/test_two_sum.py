"""Checks for two_sum.py. Run `python3 test_two_sum.py`: it stops at the first failing check."""

from two_sum import two_sum


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('two_sum([2, 7, 11, 15], 9)', two_sum([2, 7, 11, 15], 9), (0, 1))
check('two_sum([3, 2, 4], 6)', two_sum([3, 2, 4], 6), (1, 2))
check('two_sum([3, 3], 6)', two_sum([3, 3], 6), (0, 1))
check('two_sum([1, 2], 7)', two_sum([1, 2], 7), None)
check('two_sum([], 0)', two_sum([], 0), None)
check('two_sum([5, 1, 5, 4], 10)', two_sum([5, 1, 5, 4], 10), (0, 2))
check('two_sum([1, 4, 1, 4], 5)', two_sum([1, 4, 1, 4], 5), (0, 1))
print("test_two_sum.py: all 7 checks passed")
