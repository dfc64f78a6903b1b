"""Checks for counting_sort.py. Run `python3 test_counting_sort.py`: it stops at the first failing check."""

from counting_sort import counting_sort


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('counting_sort([3, 0, 2, 3, 1], 3)', counting_sort([3, 0, 2, 3, 1], 3), [0, 1, 2, 3, 3])
check('counting_sort([], 5)', counting_sort([], 5), [])
check('counting_sort([5, 5], 5)', counting_sort([5, 5], 5), [5, 5])
check('counting_sort([0], 0)', counting_sort([0], 0), [0])
check_raises('counting_sort([6], 5)', lambda: counting_sort([6], 5), ValueError)
check_raises('counting_sort([-1], 5)', lambda: counting_sort([-1], 5), ValueError)
print("test_counting_sort.py: all 6 checks passed")
