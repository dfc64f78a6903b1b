"""Checks for digit_sum.py. Run `python3 test_digit_sum.py`: it stops at the first failing check."""

from digit_sum import digit_sum


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('digit_sum(0)', digit_sum(0), 0)
check('digit_sum(7)', digit_sum(7), 7)
check('digit_sum(1234)', digit_sum(1234), 10)
check('digit_sum(-905)', digit_sum(-905), 14)
check('digit_sum(1000)', digit_sum(1000), 1)
check('digit_sum(99)', digit_sum(99), 18)
print("test_digit_sum.py: all 6 checks passed")
