def is_palindrome(text):
    """Return True if text reads the same backwards, ignoring case and anything
    that is not a letter or a digit."""
    chars = [c.lower() for c in text if c.isalnum()]
    i, j = 0, len(chars) - 1
    while i < j:
        if chars[i] != chars[j]:
            return False
        i += 1
        j += 1
    return True
