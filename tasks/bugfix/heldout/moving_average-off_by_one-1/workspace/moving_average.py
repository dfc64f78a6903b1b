def moving_average(values, window):
    """Return the averages of each run of window consecutive values, rounded to 2 decimals.

    There are len(values) - window + 1 of them (none when the list is shorter than window).
    """
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    for i in range(len(values) - window + 1):
        part = values[i:i + window - 1]
        averages.append(round(sum(part) / window, 2))
    return averages
