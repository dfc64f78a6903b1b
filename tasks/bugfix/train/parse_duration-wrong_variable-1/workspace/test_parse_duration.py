"""Checks for parse_duration.py. Run `python3 test_parse_duration.py`: it stops at the first failing check."""

from parse_duration import parse_duration


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("parse_duration('01:02:03')", parse_duration('01:02:03'), 3723)
check("parse_duration('02:03')", parse_duration('02:03'), 123)
check("parse_duration('0:00:59')", parse_duration('0:00:59'), 59)
check("parse_duration('10:00:00')", parse_duration('10:00:00'), 36000)
check_raises("parse_duration('1:60')", lambda: parse_duration('1:60'), ValueError)
check_raises("parse_duration('a:b')", lambda: parse_duration('a:b'), ValueError)
check_raises("parse_duration('1:2:3:4')", lambda: parse_duration('1:2:3:4'), ValueError)
check("parse_duration('59:59')", parse_duration('59:59'), 3599)
print("test_parse_duration.py: all 8 checks passed")
