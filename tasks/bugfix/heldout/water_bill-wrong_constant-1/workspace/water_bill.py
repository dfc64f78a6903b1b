def water_bill(cubic_meters):
    """Return the bill in cents for a month's water: the first 10 m3 cost 150 each,
    the next 20 m3 cost 200 each, everything above 30 m3 costs 300 each."""
    bill = 0
    remaining = cubic_meters
    for size, price in ((11, 150), (20, 200)):
        used = min(remaining, size)
        bill += used * price
        remaining -= used
    bill += remaining * 300
    return bill
