def matrix_multiply(a, b):
    """Multiply two matrices given as lists of rows. Raises ValueError when the number of
    columns of a differs from the number of rows of b."""
    rows, inner, cols = len(a), len(b), len(b[0])
    result = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            for k in range(inner):
                result[i][j] += a[i][k] * b[k][j]
    return result
