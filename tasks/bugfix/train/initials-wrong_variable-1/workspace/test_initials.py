"""Checks for initials.py. Run `python3 test_initials.py`: it stops at the first failing check."""

from initials import initials


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("initials('ada king lovelace')", initials('ada king lovelace'), 'A.K.L.')
check("initials('Grace Hopper')", initials('Grace Hopper'), 'G.H.')
check("initials('jean-luc picard')", initials('jean-luc picard'), 'J.L.P.')
check("initials('')", initials(''), '')
check("initials('  cher ')", initials('  cher '), 'C.')
print("test_initials.py: all 5 checks passed")
