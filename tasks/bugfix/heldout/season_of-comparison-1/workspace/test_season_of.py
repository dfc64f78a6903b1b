"""Checks for season_of.py. Run `python3 test_season_of.py`: it stops at the first failing check."""

from season_of import season_of


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('season_of(1)', season_of(1), 'winter')
check('season_of(2)', season_of(2), 'winter')
check('season_of(3)', season_of(3), 'spring')
check('season_of(5)', season_of(5), 'spring')
check('season_of(6)', season_of(6), 'summer')
check('season_of(8)', season_of(8), 'summer')
check('season_of(9)', season_of(9), 'autumn')
check('season_of(11)', season_of(11), 'autumn')
check('season_of(12)', season_of(12), 'winter')
check_raises('season_of(13)', lambda: season_of(13), ValueError)
print("test_season_of.py: all 10 checks passed")
