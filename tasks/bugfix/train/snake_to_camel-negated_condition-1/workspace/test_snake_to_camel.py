"""Checks for snake_to_camel.py. Run `python3 test_snake_to_camel.py`: it stops at the first failing check."""

from snake_to_camel import snake_to_camel


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("snake_to_camel('max_line_length')", snake_to_camel('max_line_length'), 'maxLineLength')
check("snake_to_camel('name')", snake_to_camel('name'), 'name')
check("snake_to_camel('_private_value')", snake_to_camel('_private_value'), 'privateValue')
check("snake_to_camel('a__b')", snake_to_camel('a__b'), 'aB')
check("snake_to_camel('___')", snake_to_camel('___'), '')
check("snake_to_camel('HTTP_STATUS')", snake_to_camel('HTTP_STATUS'), 'httpStatus')
print("test_snake_to_camel.py: all 6 checks passed")
