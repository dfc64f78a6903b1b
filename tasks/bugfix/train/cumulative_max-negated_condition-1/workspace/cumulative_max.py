def cumulative_max(values):
    """Return, for each position, the largest value seen up to and including it."""
    out = []
    best = None
    for v in values:
        if not (best is None or v > best):
            best = v
        out.append(best)
    return out
