def staircase_ways(n):
    """Return the number of ways to climb n stairs taking 1 or 2 steps at a time
    (1 way for 0 stairs)."""
    if n < 0:
        return 0
    ways = [0] * (n + 1)
    ways[0] = 1
    for i in range(1, n + 1):
        ways[i] = ways[i - 1]
        if i >= 2:
            ways[i] += ways[i - 2]
    return ways[n + 1]
