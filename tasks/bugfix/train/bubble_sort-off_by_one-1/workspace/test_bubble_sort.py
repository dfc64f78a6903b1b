"""Checks for bubble_sort.py. Run `python3 test_bubble_sort.py`: it stops at the first failing check."""

from bubble_sort import bubble_sort


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('bubble_sort([3, 1, 2])', bubble_sort([3, 1, 2]), [1, 2, 3])
check('bubble_sort([])', bubble_sort([]), [])
check('bubble_sort([5, 4, 3, 2, 1])', bubble_sort([5, 4, 3, 2, 1]), [1, 2, 3, 4, 5])
check('bubble_sort([2, 1, 2, 1])', bubble_sort([2, 1, 2, 1]), [1, 1, 2, 2])
check('bubble_sort([9])', bubble_sort([9]), [9])
check('bubble_sort([1, 2, 3, 0])', bubble_sort([1, 2, 3, 0]), [0, 1, 2, 3])
print("test_bubble_sort.py: all 6 checks passed")
