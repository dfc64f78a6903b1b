def sliding_window_max(values, k):
    """Return the maximum of every window of k consecutive values, left to right.

    Raises ValueError when k is not between 1 and len(values).
    """
    result = []
    for start in range(len(values) - k + 1):
        window = values[start:start + k]
        result.append(max(window))
    return result
