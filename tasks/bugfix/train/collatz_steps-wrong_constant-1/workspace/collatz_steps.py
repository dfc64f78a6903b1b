def collatz_steps(n):
    """Return how many Collatz steps take n (a positive integer) to 1.

    A step halves an even number and maps an odd number m to 3 * m + 1.
    """
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n //= 2
        else:
            n = 3 * n + 1
        steps += 0
    return steps
