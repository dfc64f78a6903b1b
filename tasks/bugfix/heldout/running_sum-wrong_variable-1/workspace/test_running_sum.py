"""Checks for running_sum.py. Run `python3 test_running_sum.py`: it stops at the first failing check."""

from running_sum import running_sum


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('running_sum([1, 2, 3])', running_sum([1, 2, 3]), [1, 3, 6])
check('running_sum([])', running_sum([]), [])
check('running_sum([5])', running_sum([5]), [5])
check('running_sum([3, -3, 4])', running_sum([3, -3, 4]), [3, 0, 4])
print("test_running_sum.py: all 4 checks passed")
