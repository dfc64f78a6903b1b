"""Checks for is_palindrome.py. Run `python3 test_is_palindrome.py`: it stops at the first failing check."""

from is_palindrome import is_palindrome


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("is_palindrome('racecar')", is_palindrome('racecar'), True)
check("is_palindrome('A man, a plan, a canal: Panama')", is_palindrome('A man, a plan, a canal: Panama'), True)
check("is_palindrome('abca')", is_palindrome('abca'), False)
check("is_palindrome('')", is_palindrome(''), True)
check("is_palindrome('ab')", is_palindrome('ab'), False)
check("is_palindrome('No lemon, no melon')", is_palindrome('No lemon, no melon'), True)
check("is_palindrome('abcdba')", is_palindrome('abcdba'), False)
print("test_is_palindrome.py: all 7 checks passed")
