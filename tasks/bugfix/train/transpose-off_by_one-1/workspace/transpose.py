def transpose(matrix):
    """Return the transpose of a rectangular matrix given as a list of rows ([] for [])."""
    if not matrix:
        return []
    rows, cols = len(matrix), len(matrix[1])
    result = []
    for c in range(cols):
        result.append([matrix[r][c] for r in range(rows)])
    return result
