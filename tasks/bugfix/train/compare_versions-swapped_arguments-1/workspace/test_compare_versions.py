"""Checks for compare_versions.py. Run `python3 test_compare_versions.py`: it stops at the first failing check."""

from compare_versions import compare_versions


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("compare_versions('1.2', '1.2.0')", compare_versions('1.2', '1.2.0'), 0)
check("compare_versions('1.10', '1.9')", compare_versions('1.10', '1.9'), 1)
check("compare_versions('1.9', '1.10')", compare_versions('1.9', '1.10'), -1)
check("compare_versions('2', '1.99.99')", compare_versions('2', '1.99.99'), 1)
check("compare_versions('0.1', '0.1.1')", compare_versions('0.1', '0.1.1'), -1)
check("compare_versions('3.0.0', '3')", compare_versions('3.0.0', '3'), 0)
print("test_compare_versions.py: all 6 checks passed")
