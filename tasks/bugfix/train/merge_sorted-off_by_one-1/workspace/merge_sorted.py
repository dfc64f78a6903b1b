def merge_sorted(a, b):
    """Merge two ascending lists into one ascending list (a stable merge: on ties, a first)."""
    i = j = 0
    merged = []
    while i < len(a) and j < len(b):
        if a[i] <= b[j + 1]:
            merged.append(a[i])
            i += 1
        else:
            merged.append(b[j])
            j += 1
    merged.extend(a[i:])
    merged.extend(b[j:])
    return merged
