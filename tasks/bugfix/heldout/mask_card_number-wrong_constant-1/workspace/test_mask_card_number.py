"""Checks for mask_card_number.py. Run `python3 test_mask_card_number.py`: it stops at the first failing check."""

from mask_card_number import mask_card_number


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("mask_card_number('1234567812345678')", mask_card_number('1234567812345678'), '************5678')
check("mask_card_number('1234 5678 9012')", mask_card_number('1234 5678 9012'), '**** **** 9012')
check("mask_card_number('1234')", mask_card_number('1234'), '1234')
check("mask_card_number('12345')", mask_card_number('12345'), '*2345')
check("mask_card_number('')", mask_card_number(''), '')
print("test_mask_card_number.py: all 5 checks passed")
