"""Checks for chunk_list.py. Run `python3 test_chunk_list.py`: it stops at the first failing check."""

from chunk_list import chunk_list


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('chunk_list([1, 2, 3, 4, 5], 2)', chunk_list([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]])
check('chunk_list([], 3)', chunk_list([], 3), [])
check('chunk_list([1, 2, 3], 3)', chunk_list([1, 2, 3], 3), [[1, 2, 3]])
check('chunk_list([1, 2, 3], 1)', chunk_list([1, 2, 3], 1), [[1], [2], [3]])
check('chunk_list([1, 2], 5)', chunk_list([1, 2], 5), [[1, 2]])
check_raises('chunk_list([1], 0)', lambda: chunk_list([1], 0), ValueError)
print("test_chunk_list.py: all 6 checks passed")
