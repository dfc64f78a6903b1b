def trim_extremes(values):
    """Return values without one occurrence of its smallest and one of its largest value,
    keeping the order of the rest. Lists of fewer than 3 values give []."""
    if len(values) <= 3:
        return []
    out = list(values)
    out.remove(min(out))
    out.remove(max(out))
    return out
