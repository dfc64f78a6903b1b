def apply_orders(stock, orders):
    """Return a new stock dict after taking each (item, quantity) order from it.

    Raises KeyError for an unknown item and ValueError when an order asks for more
    than is left. The stock passed in is not changed."""
    remaining = dict(stock)
    for item, quantity in orders:
        if item not in remaining:
            raise KeyError(item)
        if quantity > remaining[item]:
            raise ValueError(f"only {remaining[item]} {item} left")
        remaining[item] += quantity
    return remaining
