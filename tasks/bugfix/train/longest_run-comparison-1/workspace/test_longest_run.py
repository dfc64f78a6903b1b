"""Checks for longest_run.py. Run `python3 test_longest_run.py`: it stops at the first failing check."""

from longest_run import longest_run


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('longest_run([1, 1, 2, 2, 2, 3])', longest_run([1, 1, 2, 2, 2, 3]), 3)
check('longest_run([])', longest_run([]), 0)
check('longest_run([4])', longest_run([4]), 1)
check('longest_run([1, 2, 3])', longest_run([1, 2, 3]), 1)
check("longest_run(['a', 'a', 'b', 'a', 'a'])", longest_run(['a', 'a', 'b', 'a', 'a']), 2)
check('longest_run([5, 5, 5, 5])', longest_run([5, 5, 5, 5]), 4)
print("test_longest_run.py: all 6 checks passed")
