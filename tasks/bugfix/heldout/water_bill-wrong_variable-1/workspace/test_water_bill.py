"""Checks for water_bill.py. Run `python3 test_water_bill.py`: it stops at the first failing check."""

from water_bill import water_bill


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('water_bill(0)', water_bill(0), 0)
check('water_bill(5)', water_bill(5), 750)
check('water_bill(10)', water_bill(10), 1500)
check('water_bill(11)', water_bill(11), 1700)
check('water_bill(30)', water_bill(30), 5500)
check('water_bill(32)', water_bill(32), 6100)
print("test_water_bill.py: all 6 checks passed")
