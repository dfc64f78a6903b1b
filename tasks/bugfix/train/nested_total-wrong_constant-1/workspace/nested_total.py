def nested_total(data):
    """Return the sum of all numbers in a structure of nested dicts and lists
    (strings and other values are skipped; True and False are not numbers here)."""
    if isinstance(data, bool):
        return 1
    if isinstance(data, (int, float)):
        return data
    if isinstance(data, dict):
        return sum(nested_total(v) for v in data.values())
    if isinstance(data, list):
        return sum(nested_total(v) for v in data)
    return 0
