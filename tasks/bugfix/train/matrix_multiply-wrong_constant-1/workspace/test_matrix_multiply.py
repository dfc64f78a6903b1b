"""Checks for matrix_multiply.py. Run `python3 test_matrix_multiply.py`: it stops at the first failing check."""

from matrix_multiply import matrix_multiply


def check(call, got, expected):
    assert got == expected, f"{call} returned {got!r}, expected {expected!r}"


def check_raises(call, thunk, error):
    try:
        got = thunk()
    except error:
        return
    assert False, f"{call} returned {got!r}, expected it to raise {error.__name__}"


check('matrix_multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]])', matrix_multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]), [[19, 22], [43, 50]])
check('matrix_multiply([[2]], [[3]])', matrix_multiply([[2]], [[3]]), [[6]])
check('matrix_multiply([[1, 2, 3]], [[1], [0], [2]])', matrix_multiply([[1, 2, 3]], [[1], [0], [2]]), [[7]])
check('matrix_multiply([[1], [2]], [[3, 4]])', matrix_multiply([[1], [2]], [[3, 4]]), [[3, 4], [6, 8]])
check_raises('matrix_multiply([[1, 2]], [[1, 2]])', lambda: matrix_multiply([[1, 2]], [[1, 2]]), ValueError)
print("test_matrix_multiply.py: all 5 checks passed")
