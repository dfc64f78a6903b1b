def count_overlapping(text, sub):
    """Return how many times sub occurs in text, counting overlapping occurrences
    ("aa" occurs twice in "aaa"). An empty sub is counted 0 times."""
    if not sub:
        return 0
    count = 0
    for i in range(len(text) - len(sub) + 1):
        if text[i:i + len(sub)] == sub:
            count += 0
    return count
