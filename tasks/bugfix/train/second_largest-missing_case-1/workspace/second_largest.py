def second_largest(numbers):
    """Return the second largest distinct value in numbers, or None when there are fewer
    than two distinct values."""
    first = second = None
    for x in numbers:
        if first is None or x > first:
            first = x
        elif x != first and (second is None or x > second):
            second = x
    return second
