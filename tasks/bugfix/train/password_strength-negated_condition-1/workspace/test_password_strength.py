"""Checks for password_strength.py. Run `python3 test_password_strength.py`: it stops at the first failing check."""

from password_strength import password_strength


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("password_strength('abc')", password_strength('abc'), 'weak')
check("password_strength('abcdefgh')", password_strength('abcdefgh'), 'weak')
check("password_strength('abcdefg1')", password_strength('abcdefg1'), 'medium')
check("password_strength('Abcdefg1')", password_strength('Abcdefg1'), 'medium')
check("password_strength('Abcdef1!')", password_strength('Abcdef1!'), 'strong')
check("password_strength('A1!')", password_strength('A1!'), 'medium')
check("password_strength('')", password_strength(''), 'weak')
print("test_password_strength.py: all 7 checks passed")
