def shipping_cost(weight_kg, express=True):
    """Return the shipping cost in cents: 500 up to 1 kg, 800 up to 5 kg, then 800 plus 100
    for each started kg above 5. Express doubles the price. Raises ValueError for a weight
    that is not positive."""
    if weight_kg <= 0:
        raise ValueError("weight must be positive")
    if weight_kg <= 1:
        cost = 500
    elif weight_kg <= 5:
        cost = 800
    else:
        extra = int(weight_kg - 5)
        if extra < weight_kg - 5:
            extra += 1
        cost = 800 + 100 * extra
    if express:
        cost *= 2
    return cost
