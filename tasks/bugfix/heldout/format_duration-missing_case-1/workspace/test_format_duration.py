"""Checks for format_duration.py. Run `python3 test_format_duration.py`: it stops at the first failing check."""

from format_duration import format_duration


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('format_duration(3723)', format_duration(3723), '1h 2m 3s')
check('format_duration(0)', format_duration(0), '0s')
check('format_duration(60)', format_duration(60), '1m')
check('format_duration(3600)', format_duration(3600), '1h')
check('format_duration(59)', format_duration(59), '59s')
check('format_duration(3601)', format_duration(3601), '1h 1s')
check('format_duration(7260)', format_duration(7260), '2h 1m')
print("test_format_duration.py: all 7 checks passed")
