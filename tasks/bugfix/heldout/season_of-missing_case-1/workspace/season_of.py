def season_of(month):
    """Return the meteorological season of a month (1-12) in the northern hemisphere:
    Dec-Feb "winter", Mar-May "spring", Jun-Aug "summer", Sep-Nov "autumn"."""
    if not 1 <= month <= 12:
        raise ValueError(f"no month {month}")
    if month <= 5:
        return "spring"
    if month <= 8:
        return "summer"
    return "autumn"
