"""Checks for run_length_encode.py. Run `python3 test_run_length_encode.py`: it stops at the first failing check."""

from run_length_encode import run_length_encode


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("run_length_encode('aaabcc')", run_length_encode('aaabcc'), '3a1b2c')
check("run_length_encode('')", run_length_encode(''), '')
check("run_length_encode('x')", run_length_encode('x'), '1x')
check("run_length_encode('abab')", run_length_encode('abab'), '1a1b1a1b')
check("run_length_encode('zzzz')", run_length_encode('zzzz'), '4z')
print("test_run_length_encode.py: all 5 checks passed")
