def pascal_row(n):
    """Return row n of Pascal's triangle (row 0 is [1], row 3 is [1, 3, 3, 1])."""
    row = [1]
    for _ in range(n):
        nxt = [0]
        for i in range(len(row) - 1):
            nxt.append(row[i] + row[i + 1])
        nxt.append(1)
        row = nxt
    return row
