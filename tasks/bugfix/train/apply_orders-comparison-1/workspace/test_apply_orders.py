"""Checks for apply_orders.py. Run `python3 test_apply_orders.py`: it stops at the first failing check."""

from apply_orders import apply_orders


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("apply_orders({'apple': 5, 'pear': 2}, [('apple', 3), ('pear', 2)])", apply_orders({'apple': 5, 'pear': 2}, [('apple', 3), ('pear', 2)]), {'apple': 2, 'pear': 0})
check("apply_orders({'apple': 5}, [])", apply_orders({'apple': 5}, []), {'apple': 5})
check("apply_orders({'apple': 5}, [('apple', 2), ('apple', 3)])", apply_orders({'apple': 5}, [('apple', 2), ('apple', 3)]), {'apple': 0})
check_raises("apply_orders({'apple': 1}, [('kiwi', 1)])", lambda: apply_orders({'apple': 1}, [('kiwi', 1)]), KeyError)
check_raises("apply_orders({'apple': 1}, [('apple', 2)])", lambda: apply_orders({'apple': 1}, [('apple', 2)]), ValueError)
print("test_apply_orders.py: all 5 checks passed")
