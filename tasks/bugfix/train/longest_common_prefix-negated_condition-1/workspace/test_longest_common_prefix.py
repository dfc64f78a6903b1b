"""Checks for longest_common_prefix.py. Run `python3 test_longest_common_prefix.py`: it stops at the first failing check."""

from longest_common_prefix import longest_common_prefix


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("longest_common_prefix(['flower', 'flow', 'flight'])", longest_common_prefix(['flower', 'flow', 'flight']), 'fl')
check("longest_common_prefix(['dog', 'car'])", longest_common_prefix(['dog', 'car']), '')
check('longest_common_prefix([])', longest_common_prefix([]), '')
check("longest_common_prefix(['same', 'same'])", longest_common_prefix(['same', 'same']), 'same')
check("longest_common_prefix(['interview', 'internet', 'interval'])", longest_common_prefix(['interview', 'internet', 'interval']), 'inter')
check("longest_common_prefix(['ab', 'abc'])", longest_common_prefix(['ab', 'abc']), 'ab')
check("longest_common_prefix(['abc', 'ab'])", longest_common_prefix(['abc', 'ab']), 'ab')
print("test_longest_common_prefix.py: all 7 checks passed")
