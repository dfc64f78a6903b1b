def invert_mapping(mapping):
    """Return a dict from each value of mapping to the sorted list of keys that map to it."""
    inverted = {}
    for key, value in mapping.items():
        if value in inverted:
            inverted[value] = []
        inverted[value].append(key)
    for value in inverted:
        inverted[value].sort()
    return inverted
