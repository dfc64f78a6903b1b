"""Checks for balanced_brackets.py. Run `python3 test_balanced_brackets.py`: it stops at the first failing check."""

from balanced_brackets import balanced_brackets


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("balanced_brackets('([]{})')", balanced_brackets('([]{})'), True)
check("balanced_brackets('([)]')", balanced_brackets('([)]'), False)
check("balanced_brackets('')", balanced_brackets(''), True)
check("balanced_brackets('(((')", balanced_brackets('((('), False)
check("balanced_brackets('x[1] + f(y)')", balanced_brackets('x[1] + f(y)'), True)
check("balanced_brackets(')(')", balanced_brackets(')('), False)
check("balanced_brackets('{[}')", balanced_brackets('{[}'), False)
print("test_balanced_brackets.py: all 7 checks passed")
