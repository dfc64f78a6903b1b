"""Checks for binary_search.py. Run `python3 test_binary_search.py`: it stops at the first failing check."""

from binary_search import binary_search


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('binary_search([1, 3, 5, 7, 9], 7)', binary_search([1, 3, 5, 7, 9], 7), 3)
check('binary_search([1, 3, 5, 7, 9], 1)', binary_search([1, 3, 5, 7, 9], 1), 0)
check('binary_search([1, 3, 5, 7, 9], 9)', binary_search([1, 3, 5, 7, 9], 9), 4)
check('binary_search([1, 3, 5, 7, 9], 4)', binary_search([1, 3, 5, 7, 9], 4), -1)
check('binary_search([], 4)', binary_search([], 4), -1)
check('binary_search([2], 2)', binary_search([2], 2), 0)
check('binary_search([1, 3, 5, 7, 9], 10)', binary_search([1, 3, 5, 7, 9], 10), -1)
print("test_binary_search.py: all 7 checks passed")
