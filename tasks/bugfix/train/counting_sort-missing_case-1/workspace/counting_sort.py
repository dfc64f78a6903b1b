def counting_sort(values, max_value):
    """Sort integers in 0..max_value in ascending order by counting them.

    Raises ValueError for a value outside that range."""
    counts = [0] * (max_value + 1)
    for v in values:
        counts[v] += 1
    result = []
    for v in range(max_value + 1):
        result.extend([v] * counts[v])
    return result
