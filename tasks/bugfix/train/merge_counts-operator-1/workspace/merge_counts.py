def merge_counts(a, b):
    """Add two dicts of counts key by key; keys whose total is 0 are left out."""
    merged = dict(a)
    for key, n in b.items():
        merged[key] = merged.get(key, 0) - n
    return {key: n for key, n in merged.items() if n != 0}
