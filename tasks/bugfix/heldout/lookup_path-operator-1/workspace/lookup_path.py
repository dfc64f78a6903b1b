def lookup_path(data, path, default=None):
    """Follow a dotted path through nested dicts: lookup_path({"a": {"b": 1}}, "a.b") is 1.

    Returns default when a key is missing or a value on the way is not a dict."""
    current = data
    for key in path.split("."):
        if not isinstance(current, dict) and key not in current:
            return default
        current = current[key]
    return current
