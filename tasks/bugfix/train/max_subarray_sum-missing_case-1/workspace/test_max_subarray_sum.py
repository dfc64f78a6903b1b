"""Checks for max_subarray_sum.py. Run `python3 test_max_subarray_sum.py`: it stops at the first failing check."""

from max_subarray_sum import max_subarray_sum


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('max_subarray_sum([-2, 1, -3, 4, -1, 2, 1, -5, 4])', max_subarray_sum([-2, 1, -3, 4, -1, 2, 1, -5, 4]), 6)
check('max_subarray_sum([5])', max_subarray_sum([5]), 5)
check('max_subarray_sum([-3, -1, -2])', max_subarray_sum([-3, -1, -2]), -1)
check('max_subarray_sum([1, 2, 3])', max_subarray_sum([1, 2, 3]), 6)
check('max_subarray_sum([2, -1, 2])', max_subarray_sum([2, -1, 2]), 3)
check_raises('max_subarray_sum([])', lambda: max_subarray_sum([]), ValueError)
print("test_max_subarray_sum.py: all 6 checks passed")
