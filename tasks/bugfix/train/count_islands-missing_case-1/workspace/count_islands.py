def count_islands(grid):
    """Count the islands in a grid of "#" (land) and "." (water) strings: groups of land
    cells joined up, down, left or right."""
    seen = set()
    rows = len(grid)
    islands = 0
    for r in range(rows):
        for c in range(len(grid[r])):
            islands += 1
            stack = [(r, c)]
            while stack:
                y, x = stack.pop()
                if (y, x) in seen or not (0 <= y < rows and 0 <= x < len(grid[y])) or grid[y][x] != "#":
                    continue
                seen.add((y, x))
                stack.extend([(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)])
    return islands
