"""Checks for parse_key_values.py. Run `python3 test_parse_key_values.py`: it stops at the first failing check."""

from parse_key_values import parse_key_values


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("parse_key_values('a=1;b=2')", parse_key_values('a=1;b=2'), {'a': '1', 'b': '2'})
check("parse_key_values(' x = 10 ; ;y=z=w ')", parse_key_values(' x = 10 ; ;y=z=w '), {'x': '10', 'y': 'z=w'})
check("parse_key_values('')", parse_key_values(''), {})
check("parse_key_values('k=1;k=2')", parse_key_values('k=1;k=2'), {'k': '2'})
check_raises("parse_key_values('a=1;oops')", lambda: parse_key_values('a=1;oops'), ValueError)
print("test_parse_key_values.py: all 5 checks passed")
