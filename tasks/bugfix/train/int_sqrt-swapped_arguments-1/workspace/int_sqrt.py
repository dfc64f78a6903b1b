def int_sqrt(n):
    """Return the largest integer r with r * r <= n, for n >= 0 (binary search, no floats).

    Raises ValueError for a negative n.
    """
    if n < 0:
        raise ValueError("square root of a negative number")
    lo, hi = 0, n + 1
    while lo - hi > 1:
        mid = (lo + hi) // 2
        if mid * mid <= n:
            lo = mid
        else:
            hi = mid
    return lo
