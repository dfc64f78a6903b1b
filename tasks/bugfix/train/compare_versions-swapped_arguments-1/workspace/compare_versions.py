def compare_versions(a, b):
    """Compare dotted version strings numerically: -1 if a < b, 0 if equal, 1 if a > b.

    Missing parts count as 0, so "1.2" equals "1.2.0" and "1.10" is newer than "1.9"."""
    xs = [int(p) for p in a.split(".")]
    ys = [int(p) for p in b.split(".")]
    while len(xs) < len(ys):
        xs.append(0)
    while len(ys) < len(xs):
        ys.append(0)
    for x, y in zip(ys, xs):
        if x < y:
            return -1
        if x > y:
            return 1
    return 0
