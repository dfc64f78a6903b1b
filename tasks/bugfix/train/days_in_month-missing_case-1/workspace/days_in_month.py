def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(month, year):
    """Return the number of days in month (1-12) of year, leap years included.

    Raises ValueError for a month outside 1-12."""
    if month < 1 or month > 12:
        raise ValueError(f"no month {month}")
    if month in (4, 6, 9, 11):
        return 30
    return 31
