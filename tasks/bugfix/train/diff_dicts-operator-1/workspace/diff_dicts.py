def diff_dicts(old, new):
    """Compare two dicts. Returns (added, removed, changed): the sorted keys only in new,
    only in old, and in both with different values."""
    added = sorted(k for k in new if k not in old)
    removed = sorted(k for k in old if k not in new)
    changed = []
    for k in old:
        if k in new or old[k] != new[k]:
            changed.append(k)
    return added, removed, sorted(changed)
