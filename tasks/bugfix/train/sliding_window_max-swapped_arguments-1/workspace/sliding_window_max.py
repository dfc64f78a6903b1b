def sliding_window_max(values, k):
    """Return the maximum of every window of k consecutive values, left to right.

    Raises ValueError when k is not between 1 and len(values).
    """
    if k < 1 or k > len(values):
        raise ValueError("window size out of range")
    result = []
    for start in range(k - len(values) + 1):
        window = values[start:start + k]
        result.append(max(window))
    return result
