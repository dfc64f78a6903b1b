"""Checks for count_islands.py. Run `python3 test_count_islands.py`: it stops at the first failing check."""

from count_islands import count_islands


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


check("count_islands(['##.', '#..', '..#'])", count_islands(['##.', '#..', '..#']), 2)
check('count_islands([])', count_islands([]), 0)
check("count_islands(['...'])", count_islands(['...']), 0)
check("count_islands(['#.#', '.#.', '#.#'])", count_islands(['#.#', '.#.', '#.#']), 5)
check("count_islands(['###', '#.#', '###'])", count_islands(['###', '#.#', '###']), 1)
check("count_islands(['#', '#'])", count_islands(['#', '#']), 1)
print("test_count_islands.py: all 6 checks passed")
