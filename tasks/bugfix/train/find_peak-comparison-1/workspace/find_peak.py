def find_peak(values):
    """Return the index of the first element strictly greater than its neighbours (an end
    element has one neighbour), or -1 when there is none. A single element has no neighbours
    to be greater than: -1."""
    n = len(values)
    if n < 2:
        return -1
    for i in range(n):
        left_ok = i != 0 or values[i] > values[i - 1]
        right_ok = i == n - 1 or values[i] > values[i + 1]
        if left_ok and right_ok:
            return i
    return -1
