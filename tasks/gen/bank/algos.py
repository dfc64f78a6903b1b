"""Small algorithms: sorting, searching, conversions, dynamic programming."""

from bank import Raises, fn

FUNCTIONS = [
    fn("bubble_sort", '''
def bubble_sort(items):
    """Return a new list with items in ascending order (bubble sort; items is not changed)."""
    result = list(items)
    n = len(result)
    for end in range(n - 1, 0, -1):
        for i in range(end):
            if result[i] > result[i + 1]:
                result[i], result[i + 1] = result[i + 1], result[i]
    return result
''',
       ("bubble_sort([3, 1, 2])", [1, 2, 3]), ("bubble_sort([])", []), ("bubble_sort([5, 4, 3, 2, 1])", [1, 2, 3, 4, 5]),
       ("bubble_sort([2, 1, 2, 1])", [1, 1, 2, 2]), ("bubble_sort([9])", [9]), ("bubble_sort([1, 2, 3, 0])", [0, 1, 2, 3])),

    fn("insertion_sort", '''
def insertion_sort(items):
    """Return a new list with items in ascending order (insertion sort; items is not changed)."""
    result = []
    for item in items:
        i = len(result)
        while i > 0 and result[i - 1] > item:
            i -= 1
        result.insert(i, item)
    return result
''',
       ("insertion_sort([3, 1, 2])", [1, 2, 3]), ("insertion_sort([])", []), ("insertion_sort([4, 4, 1])", [1, 4, 4]),
       ("insertion_sort([1, 2, 3])", [1, 2, 3]), ("insertion_sort([0, -5, 5, -10])", [-10, -5, 0, 5])),

    fn("counting_sort", '''
def counting_sort(values, max_value):
    """Sort integers in 0..max_value in ascending order by counting them.

    Raises ValueError for a value outside that range."""
    counts = [0] * (max_value + 1)
    for v in values:
        if v < 0 or v > max_value:
            raise ValueError(f"{v} is outside 0..{max_value}")
        counts[v] += 1
    result = []
    for v in range(max_value + 1):
        result.extend([v] * counts[v])
    return result
''',
       ("counting_sort([3, 0, 2, 3, 1], 3)", [0, 1, 2, 3, 3]), ("counting_sort([], 5)", []), ("counting_sort([5, 5], 5)", [5, 5]),
       ("counting_sort([0], 0)", [0]), ("counting_sort([6], 5)", Raises("ValueError")),
       ("counting_sort([-1], 5)", Raises("ValueError"))),

    fn("two_sum", '''
def two_sum(numbers, target):
    """Return the indices (i, j), i < j, of the first pair of numbers that add up to target
    (first by j, then by i), or None when no pair does."""
    seen = {}
    for j, x in enumerate(numbers):
        need = target - x
        if need in seen:
            return seen[need], j
        if x not in seen:
            seen[x] = j
    return None
''',
       ("two_sum([2, 7, 11, 15], 9)", (0, 1)), ("two_sum([3, 2, 4], 6)", (1, 2)), ("two_sum([3, 3], 6)", (0, 1)),
       ("two_sum([1, 2], 7)", None), ("two_sum([], 0)", None), ("two_sum([5, 1, 5, 4], 10)", (0, 2)), ("two_sum([1, 4, 1, 4], 5)", (0, 1))),

    fn("dot_product", '''
def dot_product(a, b):
    """Return the dot product of two vectors of the same length.

    Raises ValueError when the lengths differ."""
    if len(a) != len(b):
        raise ValueError("vectors of different lengths")
    total = 0
    for i in range(len(a)):
        total += a[i] * b[i]
    return total
''',
       ("dot_product([1, 2, 3], [4, 5, 6])", 32), ("dot_product([], [])", 0), ("dot_product([2], [-3])", -6),
       ("dot_product([1, 0, 2], [0, 7, 1])", 2), ("dot_product([1], [1, 2])", Raises("ValueError"))),

    fn("roman_to_int", '''
VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_to_int(numeral):
    """Convert a Roman numeral ("XIV", "MCMXCIV") to an integer; a smaller symbol
    before a larger one is subtracted."""
    total = 0
    for i, ch in enumerate(numeral):
        value = VALUES[ch]
        if i + 1 < len(numeral) and value < VALUES[numeral[i + 1]]:
            total -= value
        else:
            total += value
    return total
''',
       ("roman_to_int('III')", 3), ("roman_to_int('IV')", 4), ("roman_to_int('IX')", 9), ("roman_to_int('XIV')", 14),
       ("roman_to_int('MCMXCIV')", 1994), ("roman_to_int('')", 0), ("roman_to_int('LVIII')", 58), ("roman_to_int('XX')", 20)),

    fn("int_to_roman", '''
SYMBOLS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def int_to_roman(n):
    """Write n (1-3999) as a Roman numeral. Raises ValueError outside that range."""
    if n < 1 or n > 3999:
        raise ValueError(f"{n} has no Roman numeral")
    out = []
    for value, symbol in SYMBOLS:
        while n >= value:
            out.append(symbol)
            n -= value
    return "".join(out)
''',
       ("int_to_roman(1)", "I"), ("int_to_roman(4)", "IV"), ("int_to_roman(9)", "IX"), ("int_to_roman(14)", "XIV"),
       ("int_to_roman(1994)", "MCMXCIV"), ("int_to_roman(3999)", "MMMCMXCIX"), ("int_to_roman(0)", Raises("ValueError")),
       ("int_to_roman(4000)", Raises("ValueError"))),

    fn("to_base", '''
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_base(n, base):
    """Write the integer n in base (2-36), lower-case digits, with a "-" for negatives."""
    if not 2 <= base <= 36:
        raise ValueError("base must be between 2 and 36")
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    digits = []
    while n > 0:
        n, r = divmod(n, base)
        digits.append(DIGITS[r])
    return sign + "".join(reversed(digits))
''',
       ("to_base(10, 2)", "1010"), ("to_base(255, 16)", "ff"), ("to_base(0, 7)", "0"), ("to_base(-5, 2)", "-101"),
       ("to_base(35, 36)", "z"), ("to_base(8, 8)", "10"), ("to_base(3, 1)", Raises("ValueError"))),

    fn("from_binary", '''
def from_binary(bits):
    """Return the value of a string of 0s and 1s read as a binary number ("" is 0).

    Raises ValueError for any other character."""
    value = 0
    for ch in bits:
        if ch not in "01":
            raise ValueError(f"not a binary digit: {ch!r}")
        value = value * 2 + int(ch)
    return value
''',
       ("from_binary('1010')", 10), ("from_binary('')", 0), ("from_binary('1')", 1), ("from_binary('0001')", 1),
       ("from_binary('11111111')", 255), ("from_binary('102')", Raises("ValueError"))),

    fn("count_islands", '''
def count_islands(grid):
    """Count the islands in a grid of "#" (land) and "." (water) strings: groups of land
    cells joined up, down, left or right."""
    seen = set()
    rows = len(grid)
    islands = 0
    for r in range(rows):
        for c in range(len(grid[r])):
            if grid[r][c] != "#" or (r, c) in seen:
                continue
            islands += 1
            stack = [(r, c)]
            while stack:
                y, x = stack.pop()
                if (y, x) in seen or not (0 <= y < rows and 0 <= x < len(grid[y])) or grid[y][x] != "#":
                    continue
                seen.add((y, x))
                stack.extend([(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)])
    return islands
''',
       ("count_islands(['##.', '#..', '..#'])", 2), ("count_islands([])", 0), ("count_islands(['...'])", 0),
       ("count_islands(['#.#', '.#.', '#.#'])", 5), ("count_islands(['###', '#.#', '###'])", 1), ("count_islands(['#', '#'])", 1)),

    fn("edit_distance", '''
def edit_distance(a, b):
    """Return the Levenshtein distance between a and b: the fewest single-character
    insertions, deletions and substitutions that turn a into b."""
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost))
        prev = cur
    return prev[len(b)]
''',
       ("edit_distance('kitten', 'sitting')", 3), ("edit_distance('', 'abc')", 3), ("edit_distance('abc', '')", 3),
       ("edit_distance('same', 'same')", 0), ("edit_distance('flaw', 'lawn')", 2), ("edit_distance('a', 'b')", 1)),

    fn("max_subarray_sum", '''
def max_subarray_sum(values):
    """Return the largest sum of a non-empty run of consecutive values (Kadane's algorithm).

    Raises ValueError for an empty list."""
    if not values:
        raise ValueError("no values")
    best = current = values[0]
    for v in values[1:]:
        current = max(v, current + v)
        best = max(best, current)
    return best
''',
       ("max_subarray_sum([-2, 1, -3, 4, -1, 2, 1, -5, 4])", 6), ("max_subarray_sum([5])", 5), ("max_subarray_sum([-3, -1, -2])", -1),
       ("max_subarray_sum([1, 2, 3])", 6), ("max_subarray_sum([2, -1, 2])", 3), ("max_subarray_sum([])", Raises("ValueError"))),

    fn("pascal_row", '''
def pascal_row(n):
    """Return row n of Pascal's triangle (row 0 is [1], row 3 is [1, 3, 3, 1])."""
    row = [1]
    for _ in range(n):
        nxt = [1]
        for i in range(len(row) - 1):
            nxt.append(row[i] + row[i + 1])
        nxt.append(1)
        row = nxt
    return row
''',
       ("pascal_row(0)", [1]), ("pascal_row(1)", [1, 1]), ("pascal_row(3)", [1, 3, 3, 1]), ("pascal_row(5)", [1, 5, 10, 10, 5, 1])),

    fn("primes_up_to", '''
def primes_up_to(n):
    """Return the primes up to and including n, in order (sieve of Eratosthenes)."""
    if n < 2:
        return []
    is_prime = [True] * (n + 1)
    is_prime[0] = is_prime[1] = False
    p = 2
    while p * p <= n:
        if is_prime[p]:
            for multiple in range(p * p, n + 1, p):
                is_prime[multiple] = False
        p += 1
    return [i for i in range(n + 1) if is_prime[i]]
''',
       ("primes_up_to(10)", [2, 3, 5, 7]), ("primes_up_to(1)", []), ("primes_up_to(2)", [2]), ("primes_up_to(25)", [2, 3, 5, 7, 11, 13, 17, 19, 23]),
       ("primes_up_to(9)", [2, 3, 5, 7]), ("primes_up_to(49)[-1]", 47)),

    fn("is_sorted", '''
def is_sorted(items, descending=False):
    """Return True if items are in ascending order (descending order if asked);
    equal neighbours are allowed."""
    for i in range(len(items) - 1):
        if descending and items[i] < items[i + 1]:
            return False
        if not descending and items[i] > items[i + 1]:
            return False
    return True
''',
       ("is_sorted([1, 2, 2, 3])", True), ("is_sorted([1, 3, 2])", False), ("is_sorted([])", True), ("is_sorted([5])", True),
       ("is_sorted([3, 2, 2], descending=True)", True), ("is_sorted([3, 4], descending=True)", False), ("is_sorted([2, 1])", False)),

    fn("gcd_steps", '''
def gcd_steps(a, b):
    """Return (g, steps): the greatest common divisor of two non-negative integers by
    Euclid's algorithm and the number of remainder steps it took. gcd_steps(0, 0) is (0, 0)."""
    steps = 0
    while b != 0:
        a, b = b, a % b
        steps += 1
    return a, steps
''',
       ("gcd_steps(48, 18)", (6, 3)), ("gcd_steps(7, 0)", (7, 0)), ("gcd_steps(0, 5)", (5, 1)), ("gcd_steps(0, 0)", (0, 0)),
       ("gcd_steps(17, 5)", (1, 3)), ("gcd_steps(18, 48)", (6, 4))),

    fn("matrix_multiply", '''
def matrix_multiply(a, b):
    """Multiply two matrices given as lists of rows. Raises ValueError when the number of
    columns of a differs from the number of rows of b."""
    if len(a[0]) != len(b):
        raise ValueError("shapes do not match")
    rows, inner, cols = len(a), len(b), len(b[0])
    result = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            for k in range(inner):
                result[i][j] += a[i][k] * b[k][j]
    return result
''',
       ("matrix_multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]])", [[19, 22], [43, 50]]), ("matrix_multiply([[2]], [[3]])", [[6]]),
       ("matrix_multiply([[1, 2, 3]], [[1], [0], [2]])", [[7]]), ("matrix_multiply([[1], [2]], [[3, 4]])", [[3, 4], [6, 8]]),
       ("matrix_multiply([[1, 2]], [[1, 2]])", Raises("ValueError"))),

    fn("kth_smallest", '''
def kth_smallest(values, k):
    """Return the k-th smallest value (k = 1 is the minimum), counting repeats.

    Raises IndexError when k is not between 1 and len(values)."""
    if k < 1 or k > len(values):
        raise IndexError("k out of range")
    remaining = list(values)
    for _ in range(k - 1):
        remaining.remove(min(remaining))
    return min(remaining)
''',
       ("kth_smallest([7, 2, 9, 4], 1)", 2), ("kth_smallest([7, 2, 9, 4], 2)", 4), ("kth_smallest([7, 2, 9, 4], 4)", 9),
       ("kth_smallest([3, 3, 1], 3)", 3), ("kth_smallest([1], 2)", Raises("IndexError")), ("kth_smallest([1], 0)", Raises("IndexError"))),

    fn("staircase_ways", '''
def staircase_ways(n):
    """Return the number of ways to climb n stairs taking 1 or 2 steps at a time
    (1 way for 0 stairs)."""
    if n < 0:
        return 0
    ways = [0] * (n + 1)
    ways[0] = 1
    for i in range(1, n + 1):
        ways[i] = ways[i - 1]
        if i >= 2:
            ways[i] += ways[i - 2]
    return ways[n]
''',
       ("staircase_ways(0)", 1), ("staircase_ways(1)", 1), ("staircase_ways(2)", 2), ("staircase_ways(3)", 3), ("staircase_ways(5)", 8),
       ("staircase_ways(-1)", 0), ("staircase_ways(10)", 89)),
]
