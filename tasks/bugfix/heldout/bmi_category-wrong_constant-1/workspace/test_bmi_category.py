"""Checks for bmi_category.py. Run `python3 test_bmi_category.py`: it stops at the first failing check."""

from bmi_category import bmi_category


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('bmi_category(50, 1.8)', bmi_category(50, 1.8), 'underweight')
check('bmi_category(70, 1.75)', bmi_category(70, 1.75), 'normal')
check('bmi_category(85, 1.75)', bmi_category(85, 1.75), 'overweight')
check('bmi_category(100, 1.7)', bmi_category(100, 1.7), 'obese')
check('bmi_category(100, 2)', bmi_category(100, 2), 'overweight')
check('bmi_category(74, 2)', bmi_category(74, 2), 'normal')
check('bmi_category(72, 2)', bmi_category(72, 2), 'underweight')
check_raises('bmi_category(60, 0)', lambda: bmi_category(60, 0), ValueError)
print("test_bmi_category.py: all 8 checks passed")
