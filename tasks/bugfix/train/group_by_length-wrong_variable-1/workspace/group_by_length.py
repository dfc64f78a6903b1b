def group_by_length(words):
    """Group words by their length: a dict length -> list of words of that length,
    each list in the order the words came, the lengths in increasing order."""
    groups = {}
    for word in words:
        groups.setdefault(len(words), []).append(word)
    return {length: groups[length] for length in sorted(groups)}
