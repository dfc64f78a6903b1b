"""Checks for title_case.py. Run `python3 test_title_case.py`: it stops at the first failing check."""

from title_case import title_case


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("title_case('the lord of the rings')", title_case('the lord of the rings'), 'The Lord of the Rings')
check("title_case('WAR AND PEACE')", title_case('WAR AND PEACE'), 'War and Peace')
check("title_case('a tale')", title_case('a tale'), 'A Tale')
check("title_case('')", title_case(''), '')
check("title_case('gone to the sea')", title_case('gone to the sea'), 'Gone to the Sea')
print("test_title_case.py: all 5 checks passed")
