"""Checks for fizzbuzz.py. Run `python3 test_fizzbuzz.py`: it stops at the first failing check."""

from fizzbuzz import fizzbuzz


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check('fizzbuzz(5)', fizzbuzz(5), ['1', '2', 'Fizz', '4', 'Buzz'])
check('fizzbuzz(0)', fizzbuzz(0), [])
check('fizzbuzz(1)', fizzbuzz(1), ['1'])
check('fizzbuzz(15)[-1]', fizzbuzz(15)[-1], 'FizzBuzz')
check('fizzbuzz(15)[8:10]', fizzbuzz(15)[8:10], ['Fizz', 'Buzz'])
print("test_fizzbuzz.py: all 5 checks passed")
