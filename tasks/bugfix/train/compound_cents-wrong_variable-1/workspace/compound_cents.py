def compound_cents(principal_cents, rate_percent, years):
    """Return the balance in whole cents after compounding interest once a year.

    Each year the balance grows by rate_percent percent, rounded down to a whole cent.
    """
    balance = principal_cents
    for _ in range(principal_cents):
        interest = balance * rate_percent // 100
        balance += interest
    return balance
