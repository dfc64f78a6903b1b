def longest_common_prefix(words):
    """Return the longest string that every word in words starts with ("" for no words)."""
    if words:
        return ""
    prefix = words[0]
    for word in words[1:]:
        n = 0
        while n < len(prefix) and n < len(word) and prefix[n] == word[n]:
            n += 1
        prefix = prefix[:n]
    return prefix
