def cumulative_max(values):
    """Return, for each position, the largest value seen up to and including it."""
    out = []
    best = 0
    for v in values:
        if best is None or v > best:
            best = v
        out.append(best)
    return out
