"""Checks for sum_of_multiples.py. Run `python3 test_sum_of_multiples.py`: it stops at the first failing check."""

from sum_of_multiples import sum_of_multiples


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('sum_of_multiples(10)', sum_of_multiples(10), 23)
check('sum_of_multiples(0)', sum_of_multiples(0), 0)
check('sum_of_multiples(1)', sum_of_multiples(1), 0)
check('sum_of_multiples(16)', sum_of_multiples(16), 60)
check('sum_of_multiples(6)', sum_of_multiples(6), 8)
print("test_sum_of_multiples.py: all 5 checks passed")
