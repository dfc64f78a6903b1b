def ticket_price(age, student=False):
    """Return the ticket price in euros: children under 4 are free, under 12 pay 5,
    65 and older pay 7, everyone else 12; students (12 and older) pay 8 unless a
    cheaper price applies."""
    if age < 4:
        return 0
    if age < 12:
        return 5
    if student >= 65:
        return 7
    if student:
        return 8
    return 12
