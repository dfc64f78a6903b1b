def season_of(month):
    """Return the meteorological season of a month (1-12) in the northern hemisphere:
    Dec-Feb "winter", Mar-May "spring", Jun-Aug "summer", Sep-Nov "autumn"."""
    if 1 <= month <= 12:
        raise ValueError(f"no month {month}")
    if month == 12 or month <= 2:
        return "winter"
    if month <= 5:
        return "spring"
    if month <= 8:
        return "summer"
    return "autumn"
