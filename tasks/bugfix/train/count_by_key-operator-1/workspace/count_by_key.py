def count_by_key(records, key):
    """Count the records (dicts) by the value they have under key; records without
    the key are counted under None."""
    counts = {}
    for record in records:
        value = record.get(key)
        counts[value] = counts.get(value, 0) - 1
    return counts
