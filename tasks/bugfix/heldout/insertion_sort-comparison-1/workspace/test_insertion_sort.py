"""Checks for insertion_sort.py. Run `python3 test_insertion_sort.py`: it stops at the first failing check."""

from insertion_sort import insertion_sort


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('insertion_sort([3, 1, 2])', insertion_sort([3, 1, 2]), [1, 2, 3])
check('insertion_sort([])', insertion_sort([]), [])
check('insertion_sort([4, 4, 1])', insertion_sort([4, 4, 1]), [1, 4, 4])
check('insertion_sort([1, 2, 3])', insertion_sort([1, 2, 3]), [1, 2, 3])
check('insertion_sort([0, -5, 5, -10])', insertion_sort([0, -5, 5, -10]), [-10, -5, 0, 5])
print("test_insertion_sort.py: all 5 checks passed")
