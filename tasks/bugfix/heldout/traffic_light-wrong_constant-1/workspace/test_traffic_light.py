"""Checks for traffic_light.py. Run `python3 test_traffic_light.py`: it stops at the first failing check."""

from traffic_light import traffic_light


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check("traffic_light('green', 5)", traffic_light('green', 5), 'go')
check("traffic_light('red', 0)", traffic_light('red', 0), 'stop')
check("traffic_light('amber', 1)", traffic_light('amber', 1), 'go')
check("traffic_light('amber', 0)", traffic_light('amber', 0), 'go')
check("traffic_light('amber', 2)", traffic_light('amber', 2), 'stop')
check_raises("traffic_light('blue', 1)", lambda: traffic_light('blue', 1), ValueError)
print("test_traffic_light.py: all 6 checks passed")
