"""Checks for strip_comment.py. Run `python3 test_strip_comment.py`: it stops at the first failing check."""

from strip_comment import strip_comment


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("strip_comment('x = 1  # set x')", strip_comment('x = 1  # set x'), 'x = 1')
check("strip_comment('no comment  ')", strip_comment('no comment  '), 'no comment')
check('strip_comment(\'s = "a#b"  # note\')', strip_comment('s = "a#b"  # note'), 's = "a#b"')
check("strip_comment('# all comment')", strip_comment('# all comment'), '')
check("strip_comment('a = 2 // 3', '//')", strip_comment('a = 2 // 3', '//'), 'a = 2')
check('strip_comment(\'"#"\')', strip_comment('"#"'), '"#"')
print("test_strip_comment.py: all 6 checks passed")
