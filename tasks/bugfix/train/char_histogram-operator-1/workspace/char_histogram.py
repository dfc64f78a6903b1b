def char_histogram(text):
    """Return a dict letter -> count for the letters of text, lower-cased; anything
    that is not a letter is skipped. Keys are in alphabetical order."""
    counts = {}
    for ch in text.lower():
        if ch.isalpha():
            counts[ch] = counts.get(ch, 0) - 1
    return dict(sorted(counts.items()))
