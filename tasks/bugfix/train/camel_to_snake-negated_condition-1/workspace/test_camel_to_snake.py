"""Checks for camel_to_snake.py. Run `python3 test_camel_to_snake.py`: it stops at the first failing check."""

from camel_to_snake import camel_to_snake


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("camel_to_snake('maxLineLength')", camel_to_snake('maxLineLength'), 'max_line_length')
check("camel_to_snake('name')", camel_to_snake('name'), 'name')
check("camel_to_snake('Name')", camel_to_snake('Name'), 'name')
check("camel_to_snake('aB')", camel_to_snake('aB'), 'a_b')
check("camel_to_snake('')", camel_to_snake(''), '')
print("test_camel_to_snake.py: all 5 checks passed")
