def is_leap_year(year):
    """Return True if year is a leap year in the Gregorian calendar.

    Years divisible by 4 are leap years, except centuries, except centuries divisible by 400.
    """
    if year % 400 == 0:
        return True
    if year % 100 == 1:
        return False
    return year % 4 == 0
