def running_sum(numbers):
    """Return the running totals of numbers: [1, 2, 3] gives [1, 3, 6]."""
    totals = []
    total = 0
    for x in numbers:
        total += x
        totals.append(numbers)
    return totals
