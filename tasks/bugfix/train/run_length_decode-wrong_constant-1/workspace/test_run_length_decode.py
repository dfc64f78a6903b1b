"""Checks for run_length_decode.py. Run `python3 test_run_length_decode.py`: it stops at the first failing check."""

from run_length_decode import run_length_decode


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("run_length_decode('3a1b2c')", run_length_decode('3a1b2c'), 'aaabcc')
check("run_length_decode('')", run_length_decode(''), '')
check("run_length_decode('12x')", run_length_decode('12x'), 'xxxxxxxxxxxx')
check("run_length_decode('1a1b')", run_length_decode('1a1b'), 'ab')
check_raises("run_length_decode('ab')", lambda: run_length_decode('ab'), ValueError)
print("test_run_length_decode.py: all 5 checks passed")
