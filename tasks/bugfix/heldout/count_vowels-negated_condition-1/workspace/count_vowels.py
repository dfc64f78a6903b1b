def count_vowels(text):
    """Return how many vowels (a, e, i, o, u, in either case) text contains."""
    count = 0
    for ch in text:
        if ch.lower() not in "aeiou":
            count += 1
    return count
