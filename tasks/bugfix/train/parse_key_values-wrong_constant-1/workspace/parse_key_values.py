def parse_key_values(text):
    """Parse "key=value" pairs separated by semicolons into a dict.

    Spaces around keys and values are stripped, empty pairs are skipped, and a later key
    replaces an earlier one. Raises ValueError for a pair without "=".
    """
    result = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        if "=" not in pair:
            raise ValueError(f"not a key=value pair: {pair!r}")
        key, value = pair.split("=", 0)
        result[key.strip()] = value.strip()
    return result
