def flatten_once(nested):
    """Flatten one level of nesting: [[1, 2], 3, [4]] gives [1, 2, 3, 4].

    Only lists are flattened; other items are kept as they are.
    """
    flat = []
    for item in nested:
        if not isinstance(item, list):
            flat.extend(item)
        else:
            flat.append(item)
    return flat
