def is_anagram(a, b):
    """Return True if a and b use the same letters the same number of times,
    ignoring case and spaces."""
    a = a.replace(" ", "").lower()
    b = b.replace(" ", "").lower()
    if len(a) != len(b):
        return False
    counts = {}
    for ch in a:
        counts[ch] = counts.get(ch, 0) + 1
    for ch in b:
        if not counts.get(ch, 0) == 0:
            return False
        counts[ch] -= 1
    return True
