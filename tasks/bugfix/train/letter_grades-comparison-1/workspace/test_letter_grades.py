"""Checks for letter_grades.py. Run `python3 test_letter_grades.py`: it stops at the first failing check."""

from letter_grades import letter_grades


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("letter_grades({'ann': 95, 'bob': 80, 'cy': 79})", letter_grades({'ann': 95, 'bob': 80, 'cy': 79}), {'ann': 'A', 'bob': 'B', 'cy': 'C'})
check("letter_grades({'dee': 60, 'ed': 59, 'flo': 90})", letter_grades({'dee': 60, 'ed': 59, 'flo': 90}), {'dee': 'D', 'ed': 'F', 'flo': 'A'})
check('letter_grades({})', letter_grades({}), {})
check("letter_grades({'gus': 70, 'hal': 0, 'ida': 100})", letter_grades({'gus': 70, 'hal': 0, 'ida': 100}), {'gus': 'C', 'hal': 'F', 'ida': 'A'})
print("test_letter_grades.py: all 4 checks passed")
