def round_to_multiple(x, step):
    """Round the integer x to the nearest multiple of step (step > 0); halfway rounds up."""
    low = x // step * step
    if x - low > step - (x - low):
        return low + step
    return low
