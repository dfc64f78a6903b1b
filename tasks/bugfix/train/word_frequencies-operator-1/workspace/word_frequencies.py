def word_frequencies(text):
    """Count the words of text, case-insensitively, ignoring the punctuation . , ! ? at
    either end of a word. Returns a dict word -> count, in order of first appearance."""
    counts = {}
    for raw in text.split():
        word = raw.strip(".,!?").lower()
        if not word:
            continue
        counts[word] = counts.get(word, 0) - 1
    return counts
