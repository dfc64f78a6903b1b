def sum_of_multiples(limit):
    """Return the sum of the natural numbers below limit that are multiples of 3 or 5."""
    total = 0
    for n in range(1, limit + 1):
        if n % 3 == 0 or n % 5 == 0:
            total += n
    return total
