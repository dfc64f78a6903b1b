"""Checks for ticket_price.py. Run `python3 test_ticket_price.py`: it stops at the first failing check."""

from ticket_price import ticket_price


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('ticket_price(3)', ticket_price(3), 0)
check('ticket_price(4)', ticket_price(4), 5)
check('ticket_price(11)', ticket_price(11), 5)
check('ticket_price(12)', ticket_price(12), 12)
check('ticket_price(30)', ticket_price(30), 12)
check('ticket_price(20, student=True)', ticket_price(20, student=True), 8)
check('ticket_price(65)', ticket_price(65), 7)
check('ticket_price(70, student=True)', ticket_price(70, student=True), 7)
check('ticket_price(64)', ticket_price(64), 12)
print("test_ticket_price.py: all 9 checks passed")
