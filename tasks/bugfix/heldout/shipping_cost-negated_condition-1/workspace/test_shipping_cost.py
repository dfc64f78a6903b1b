"""Checks for shipping_cost.py. Run `python3 test_shipping_cost.py`: it stops at the first failing check."""

from shipping_cost import shipping_cost


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('shipping_cost(0.5)', shipping_cost(0.5), 500)
check('shipping_cost(1)', shipping_cost(1), 500)
check('shipping_cost(1.2)', shipping_cost(1.2), 800)
check('shipping_cost(5)', shipping_cost(5), 800)
check('shipping_cost(5.5)', shipping_cost(5.5), 900)
check('shipping_cost(7)', shipping_cost(7), 1000)
check('shipping_cost(2, express=True)', shipping_cost(2, express=True), 1600)
check_raises('shipping_cost(0)', lambda: shipping_cost(0), ValueError)
print("test_shipping_cost.py: all 8 checks passed")
