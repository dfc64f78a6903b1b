def manhattan_distance(p, q):
    """Return the Manhattan (taxicab) distance between two points given as (x, y) tuples."""
    dx = p[0] - q[0]
    dy = p[1] - q[1]
    return abs(p) + abs(dy)
