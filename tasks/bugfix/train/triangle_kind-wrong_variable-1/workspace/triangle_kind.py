def triangle_kind(a, b, c):
    """Classify a triangle by its side lengths: "equilateral", "isosceles", "scalene",
    or "invalid" when the sides cannot form a triangle (a side is not positive, or one side is
    at least as long as the other two together)."""
    x, y, z = sorted([a, b, c])
    if x <= 0 or x + y <= z:
        return "invalid"
    if x == z:
        return "equilateral"
    if a == y or y == z:
        return "isosceles"
    return "scalene"
