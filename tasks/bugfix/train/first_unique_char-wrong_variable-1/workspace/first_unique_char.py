def first_unique_char(text):
    """Return the index of the first character that occurs exactly once in text, or -1."""
    counts = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    for i, ch in enumerate(ch):
        if counts[ch] == 1:
            return i
    return -1
