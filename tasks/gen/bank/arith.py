"""Arithmetic: numbers in, numbers out."""

from bank import Raises, fn

FUNCTIONS = [
    fn("clamp", '''
def clamp(x, low, high):
    """Return x limited to the range [low, high].

    Raises ValueError when low is greater than high.
    """
    if low > high:
        raise ValueError("low must not be greater than high")
    if x < low:
        return low
    if x > high:
        return high
    return x
''',
       ("clamp(5, 0, 10)", 5), ("clamp(-3, 0, 10)", 0), ("clamp(12, 0, 10)", 10), ("clamp(0, 0, 10)", 0),
       ("clamp(10, 0, 10)", 10), ("clamp(4, 4, 4)", 4), ("clamp(1, 5, 2)", Raises("ValueError"))),

    fn("digit_sum", '''
def digit_sum(n):
    """Return the sum of the decimal digits of n; the sign of n is ignored."""
    n = abs(n)
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total
''',
       ("digit_sum(0)", 0), ("digit_sum(7)", 7), ("digit_sum(1234)", 10), ("digit_sum(-905)", 14),
       ("digit_sum(1000)", 1), ("digit_sum(99)", 18)),

    fn("factorial", '''
def factorial(n):
    """Return n! for a non-negative integer n (0! is 1).

    Raises ValueError for a negative n.
    """
    if n < 0:
        raise ValueError("factorial of a negative number")
    result = 1
    for k in range(2, n + 1):
        result *= k
    return result
''',
       ("factorial(0)", 1), ("factorial(1)", 1), ("factorial(2)", 2), ("factorial(5)", 120), ("factorial(10)", 3628800),
       ("factorial(-1)", Raises("ValueError"))),

    fn("fibonacci", '''
def fibonacci(n):
    """Return the n-th Fibonacci number: fibonacci(0) is 0, fibonacci(1) is 1."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
''',
       ("fibonacci(0)", 0), ("fibonacci(1)", 1), ("fibonacci(2)", 1), ("fibonacci(7)", 13), ("fibonacci(20)", 6765)),

    fn("is_prime", '''
def is_prime(n):
    """Return True if n is a prime number, False otherwise (numbers below 2 are not prime)."""
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True
''',
       ("is_prime(-7)", False), ("is_prime(0)", False), ("is_prime(1)", False), ("is_prime(2)", True), ("is_prime(3)", True),
       ("is_prime(4)", False), ("is_prime(9)", False), ("is_prime(25)", False), ("is_prime(29)", True), ("is_prime(49)", False)),

    fn("power_mod", '''
def power_mod(base, exponent, modulus):
    """Return (base ** exponent) % modulus by repeated squaring; exponent is a non-negative integer."""
    result = 1 % modulus
    base %= modulus
    while exponent > 0:
        if exponent % 2 == 1:
            result = result * base % modulus
        base = base * base % modulus
        exponent //= 2
    return result
''',
       ("power_mod(2, 10, 1000)", 24), ("power_mod(3, 0, 7)", 1), ("power_mod(5, 3, 13)", 8), ("power_mod(7, 1, 5)", 2),
       ("power_mod(10, 5, 1)", 0), ("power_mod(4, 13, 497)", 445)),

    fn("int_sqrt", '''
def int_sqrt(n):
    """Return the largest integer r with r * r <= n, for n >= 0 (binary search, no floats).

    Raises ValueError for a negative n.
    """
    if n < 0:
        raise ValueError("square root of a negative number")
    lo, hi = 0, n + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid * mid <= n:
            lo = mid
        else:
            hi = mid
    return lo
''',
       ("int_sqrt(0)", 0), ("int_sqrt(1)", 1), ("int_sqrt(3)", 1), ("int_sqrt(4)", 2), ("int_sqrt(15)", 3),
       ("int_sqrt(16)", 4), ("int_sqrt(1000000)", 1000), ("int_sqrt(-4)", Raises("ValueError"))),

    fn("count_digits", '''
def count_digits(n):
    """Return how many decimal digits n has; 0 has one digit and the sign does not count."""
    n = abs(n)
    if n == 0:
        return 1
    count = 0
    while n:
        n //= 10
        count += 1
    return count
''',
       ("count_digits(0)", 1), ("count_digits(5)", 1), ("count_digits(10)", 2), ("count_digits(-999)", 3),
       ("count_digits(123456)", 6)),

    fn("collatz_steps", '''
def collatz_steps(n):
    """Return how many Collatz steps take n (a positive integer) to 1.

    A step halves an even number and maps an odd number m to 3 * m + 1.
    """
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n //= 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps
''',
       ("collatz_steps(1)", 0), ("collatz_steps(2)", 1), ("collatz_steps(3)", 7), ("collatz_steps(6)", 8),
       ("collatz_steps(27)", 111)),

    fn("is_leap_year", '''
def is_leap_year(year):
    """Return True if year is a leap year in the Gregorian calendar.

    Years divisible by 4 are leap years, except centuries, except centuries divisible by 400.
    """
    if year % 400 == 0:
        return True
    if year % 100 == 0:
        return False
    return year % 4 == 0
''',
       ("is_leap_year(2024)", True), ("is_leap_year(2023)", False), ("is_leap_year(1900)", False),
       ("is_leap_year(2000)", True), ("is_leap_year(2100)", False), ("is_leap_year(1996)", True)),

    fn("percent_change", '''
def percent_change(old, new):
    """Return the change from old to new as a percentage of old, rounded to one decimal.

    Raises ValueError when old is 0.
    """
    if old == 0:
        raise ValueError("no percentage change from zero")
    change = (new - old) / abs(old) * 100
    return round(change, 1)
''',
       ("percent_change(100, 150)", 50.0), ("percent_change(200, 150)", -25.0), ("percent_change(80, 80)", 0.0),
       ("percent_change(3, 4)", 33.3), ("percent_change(-50, -25)", 50.0), ("percent_change(0, 5)", Raises("ValueError"))),

    fn("round_to_multiple", '''
def round_to_multiple(x, step):
    """Round the integer x to the nearest multiple of step (step > 0); halfway rounds up."""
    low = x // step * step
    if x - low >= step - (x - low):
        return low + step
    return low
''',
       ("round_to_multiple(7, 5)", 5), ("round_to_multiple(8, 5)", 10), ("round_to_multiple(10, 5)", 10),
       ("round_to_multiple(5, 10)", 10), ("round_to_multiple(-7, 5)", -5), ("round_to_multiple(0, 3)", 0),
       ("round_to_multiple(13, 4)", 12)),

    fn("triangle_kind", '''
def triangle_kind(a, b, c):
    """Classify a triangle by its side lengths: "equilateral", "isosceles", "scalene",
    or "invalid" when the sides cannot form a triangle (a side is not positive, or one side is
    at least as long as the other two together)."""
    x, y, z = sorted([a, b, c])
    if x <= 0 or x + y <= z:
        return "invalid"
    if x == z:
        return "equilateral"
    if x == y or y == z:
        return "isosceles"
    return "scalene"
''',
       ("triangle_kind(3, 3, 3)", "equilateral"), ("triangle_kind(3, 4, 5)", "scalene"), ("triangle_kind(5, 5, 8)", "isosceles"),
       ("triangle_kind(8, 5, 5)", "isosceles"), ("triangle_kind(5, 8, 8)", "isosceles"), ("triangle_kind(1, 2, 3)", "invalid"),
       ("triangle_kind(0, 1, 1)", "invalid"), ("triangle_kind(2, 3, 4)", "scalene")),

    fn("manhattan_distance", '''
def manhattan_distance(p, q):
    """Return the Manhattan (taxicab) distance between two points given as (x, y) tuples."""
    dx = p[0] - q[0]
    dy = p[1] - q[1]
    return abs(dx) + abs(dy)
''',
       ("manhattan_distance((0, 0), (3, 4))", 7), ("manhattan_distance((1, 1), (1, 1))", 0),
       ("manhattan_distance((-2, 5), (3, -1))", 11), ("manhattan_distance((4, 0), (0, 0))", 4),
       ("manhattan_distance((0, 2), (0, 9))", 7)),

    fn("mean_ignoring_none", '''
def mean_ignoring_none(values):
    """Return the mean of the values that are not None, or None when there are none."""
    total = 0
    count = 0
    for v in values:
        if v is None:
            continue
        total += v
        count += 1
    if count == 0:
        return None
    return total / count
''',
       ("mean_ignoring_none([1, 2, 3])", 2.0), ("mean_ignoring_none([None, 4, None, 6])", 5.0),
       ("mean_ignoring_none([])", None), ("mean_ignoring_none([None, None])", None), ("mean_ignoring_none([0, None, 3])", 1.5)),

    fn("compound_cents", '''
def compound_cents(principal_cents, rate_percent, years):
    """Return the balance in whole cents after compounding interest once a year.

    Each year the balance grows by rate_percent percent, rounded down to a whole cent.
    """
    balance = principal_cents
    for _ in range(years):
        interest = balance * rate_percent // 100
        balance += interest
    return balance
''',
       ("compound_cents(10000, 5, 0)", 10000), ("compound_cents(10000, 5, 1)", 10500), ("compound_cents(10000, 5, 2)", 11025),
       ("compound_cents(999, 10, 3)", 1327), ("compound_cents(5000, 0, 4)", 5000)),

    fn("median", '''
def median(values):
    """Return the median of a non-empty list of numbers (the mean of the two middle ones
    when the count is even). The list is not changed.

    Raises ValueError for an empty list.
    """
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
''',
       ("median([3])", 3), ("median([3, 1, 2])", 2), ("median([4, 1, 3, 2])", 2.5), ("median([5, 5, 1, 9])", 5.0),
       ("median([10, 2])", 6.0), ("median([])", Raises("ValueError"))),

    fn("lcm_of_list", '''
def gcd(a, b):
    """Greatest common divisor of two non-negative integers."""
    while b:
        a, b = b, a % b
    return a


def lcm_of_list(numbers):
    """Return the least common multiple of a list of positive integers (1 for an empty list)."""
    result = 1
    for n in numbers:
        result = result * n // gcd(result, n)
    return result
''',
       ("lcm_of_list([])", 1), ("lcm_of_list([4])", 4), ("lcm_of_list([4, 6])", 12), ("lcm_of_list([2, 3, 5])", 30),
       ("lcm_of_list([6, 10, 15])", 30), ("lcm_of_list([7, 7])", 7)),
]
