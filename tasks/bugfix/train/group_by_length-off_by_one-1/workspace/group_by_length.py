def group_by_length(words):
    """Group words by their length: a dict length -> list of words of that length,
    each list in the order the words came, the lengths in increasing order."""
    groups = {}
    for word in words:
        groups.setdefault(len(word), []).append(word)
    return {length: groups[length + 1] for length in sorted(groups)}
