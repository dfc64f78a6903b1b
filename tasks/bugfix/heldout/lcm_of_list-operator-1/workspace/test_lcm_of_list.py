"""Checks for lcm_of_list.py. Run `python3 test_lcm_of_list.py`: it stops at the first failing check."""

from lcm_of_list import lcm_of_list


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('lcm_of_list([])', lcm_of_list([]), 1)
check('lcm_of_list([4])', lcm_of_list([4]), 4)
check('lcm_of_list([4, 6])', lcm_of_list([4, 6]), 12)
check('lcm_of_list([2, 3, 5])', lcm_of_list([2, 3, 5]), 30)
check('lcm_of_list([6, 10, 15])', lcm_of_list([6, 10, 15]), 30)
check('lcm_of_list([7, 7])', lcm_of_list([7, 7]), 7)
print("test_lcm_of_list.py: all 6 checks passed")
