def diff_dicts(old, new):
    """Compare two dicts. Returns (added, removed, changed): the sorted keys only in new,
    only in old, and in both with different values."""
    added = sorted(k for k in new if k in old)
    removed = sorted(k for k in old if k not in new)
    changed = []
    for k in old:
        if k in new and old[k] != new[k]:
            changed.append(k)
    return added, removed, sorted(changed)
