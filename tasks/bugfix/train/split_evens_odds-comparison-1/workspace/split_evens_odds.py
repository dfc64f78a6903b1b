def split_evens_odds(numbers):
    """Return (evens, odds): the even and the odd numbers of the list, each in their original order."""
    evens = []
    odds = []
    for n in numbers:
        if n % 2 != 0:
            evens.append(n)
        else:
            odds.append(n)
    return evens, odds
