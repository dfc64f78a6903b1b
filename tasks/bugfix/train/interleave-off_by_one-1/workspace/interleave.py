def interleave(a, b):
    """Alternate the items of a and b, starting with a; what is left of the longer list
    comes at the end: interleave([1, 2, 3], ["x"]) gives [1, "x", 2, 3]."""
    out = []
    n = min(len(a), len(b))
    for i in range(n + 1):
        out.append(a[i])
        out.append(b[i])
    out.extend(a[n:])
    out.extend(b[n:])
    return out
