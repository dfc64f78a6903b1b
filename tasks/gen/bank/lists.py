"""Lists: traversals, windows, positions."""

from bank import Raises, fn

FUNCTIONS = [
    fn("running_sum", '''
def running_sum(numbers):
    """Return the running totals of numbers: [1, 2, 3] gives [1, 3, 6]."""
    totals = []
    total = 0
    for x in numbers:
        total += x
        totals.append(total)
    return totals
''',
       ("running_sum([1, 2, 3])", [1, 3, 6]), ("running_sum([])", []), ("running_sum([5])", [5]),
       ("running_sum([3, -3, 4])", [3, 0, 4])),

    fn("index_of_max", '''
def index_of_max(values):
    """Return the index of the largest value (the first one on a tie), or -1 for an empty list."""
    if not values:
        return -1
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best
''',
       ("index_of_max([3, 9, 2])", 1), ("index_of_max([])", -1), ("index_of_max([7])", 0), ("index_of_max([1, 5, 5])", 1),
       ("index_of_max([-4, -2, -9])", 1), ("index_of_max([1, 2, 3, 8])", 3)),

    fn("second_largest", '''
def second_largest(numbers):
    """Return the second largest distinct value in numbers, or None when there are fewer
    than two distinct values."""
    first = second = None
    for x in numbers:
        if first is None or x > first:
            if first is not None:
                second = first
            first = x
        elif x != first and (second is None or x > second):
            second = x
    return second
''',
       ("second_largest([3, 1, 4, 1, 5])", 4), ("second_largest([5, 5, 5])", None), ("second_largest([])", None),
       ("second_largest([2, 9])", 2), ("second_largest([9, 2])", 2), ("second_largest([-1, -3, -2])", -2),
       ("second_largest([7, 7, 3])", 3)),

    fn("chunk_list", '''
def chunk_list(items, size):
    """Split items into consecutive lists of size elements; the last one may be shorter.

    Raises ValueError when size is not positive.
    """
    if size <= 0:
        raise ValueError("size must be positive")
    chunks = []
    for start in range(0, len(items), size):
        chunks.append(items[start:start + size])
    return chunks
''',
       ("chunk_list([1, 2, 3, 4, 5], 2)", [[1, 2], [3, 4], [5]]), ("chunk_list([], 3)", []), ("chunk_list([1, 2, 3], 3)", [[1, 2, 3]]),
       ("chunk_list([1, 2, 3], 1)", [[1], [2], [3]]), ("chunk_list([1, 2], 5)", [[1, 2]]), ("chunk_list([1], 0)", Raises("ValueError"))),

    fn("flatten_once", '''
def flatten_once(nested):
    """Flatten one level of nesting: [[1, 2], 3, [4]] gives [1, 2, 3, 4].

    Only lists are flattened; other items are kept as they are.
    """
    flat = []
    for item in nested:
        if isinstance(item, list):
            flat.extend(item)
        else:
            flat.append(item)
    return flat
''',
       ("flatten_once([[1, 2], 3, [4]])", [1, 2, 3, 4]), ("flatten_once([])", []), ("flatten_once([[1, [2]], []])", [1, [2]]),
       ("flatten_once(['ab', [None]])", ["ab", None])),

    fn("rotate_left", '''
def rotate_left(items, k):
    """Return items rotated left by k places: rotate_left([1, 2, 3, 4], 1) gives [2, 3, 4, 1].

    k may be larger than the list or negative (a right rotation)."""
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]
''',
       ("rotate_left([1, 2, 3, 4], 1)", [2, 3, 4, 1]), ("rotate_left([1, 2, 3, 4], 0)", [1, 2, 3, 4]),
       ("rotate_left([1, 2, 3, 4], 6)", [3, 4, 1, 2]), ("rotate_left([1, 2, 3], -1)", [3, 1, 2]), ("rotate_left([], 3)", [])),

    fn("dedupe", '''
def dedupe(items):
    """Return items without repeats, keeping the first occurrence of each and the order."""
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
''',
       ("dedupe([3, 1, 3, 2, 1])", [3, 1, 2]), ("dedupe([])", []), ("dedupe(['a', 'a'])", ["a"]), ("dedupe([1, 2, 3])", [1, 2, 3])),

    fn("moving_average", '''
def moving_average(values, window):
    """Return the averages of each run of window consecutive values, rounded to 2 decimals.

    There are len(values) - window + 1 of them (none when the list is shorter than window).
    """
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    for i in range(len(values) - window + 1):
        part = values[i:i + window]
        averages.append(round(sum(part) / window, 2))
    return averages
''',
       ("moving_average([1, 2, 3, 4], 2)", [1.5, 2.5, 3.5]), ("moving_average([1, 2, 3], 3)", [2.0]),
       ("moving_average([1, 2], 3)", []), ("moving_average([10, 20, 30, 40, 50], 1)", [10.0, 20.0, 30.0, 40.0, 50.0]),
       ("moving_average([1, 2, 2], 2)", [1.5, 2.0]), ("moving_average([1], 0)", Raises("ValueError"))),

    fn("pairwise_differences", '''
def pairwise_differences(values):
    """Return the differences between neighbours: [1, 4, 9] gives [3, 5] (each later minus earlier)."""
    diffs = []
    for i in range(1, len(values)):
        diffs.append(values[i] - values[i - 1])
    return diffs
''',
       ("pairwise_differences([1, 4, 9])", [3, 5]), ("pairwise_differences([5])", []), ("pairwise_differences([])", []),
       ("pairwise_differences([3, 1, 1, 4])", [-2, 0, 3])),

    fn("merge_sorted", '''
def merge_sorted(a, b):
    """Merge two ascending lists into one ascending list (a stable merge: on ties, a first)."""
    i = j = 0
    merged = []
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            merged.append(a[i])
            i += 1
        else:
            merged.append(b[j])
            j += 1
    merged.extend(a[i:])
    merged.extend(b[j:])
    return merged
''',
       ("merge_sorted([1, 3, 5], [2, 4, 6])", [1, 2, 3, 4, 5, 6]), ("merge_sorted([], [1, 2])", [1, 2]),
       ("merge_sorted([1, 2], [])", [1, 2]), ("merge_sorted([1, 1], [1])", [1, 1, 1]), ("merge_sorted([5, 6], [1, 2])", [1, 2, 5, 6]),
       ("merge_sorted([1, 9], [2, 3, 4])", [1, 2, 3, 4, 9])),

    fn("binary_search", '''
def binary_search(items, target):
    """Return the index of target in the ascending list items, or -1 if it is not there."""
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
''',
       ("binary_search([1, 3, 5, 7, 9], 7)", 3), ("binary_search([1, 3, 5, 7, 9], 1)", 0), ("binary_search([1, 3, 5, 7, 9], 9)", 4),
       ("binary_search([1, 3, 5, 7, 9], 4)", -1), ("binary_search([], 4)", -1), ("binary_search([2], 2)", 0),
       ("binary_search([1, 3, 5, 7, 9], 10)", -1)),

    fn("find_peak", '''
def find_peak(values):
    """Return the index of the first element strictly greater than its neighbours (an end
    element has one neighbour), or -1 when there is none. A single element has no neighbours
    to be greater than: -1."""
    n = len(values)
    if n < 2:
        return -1
    for i in range(n):
        left_ok = i == 0 or values[i] > values[i - 1]
        right_ok = i == n - 1 or values[i] > values[i + 1]
        if left_ok and right_ok:
            return i
    return -1
''',
       ("find_peak([1, 3, 2])", 1), ("find_peak([5, 1, 2])", 0), ("find_peak([1, 2, 3])", 2), ("find_peak([2, 2, 2])", -1),
       ("find_peak([7])", -1), ("find_peak([1, 2, 2, 1, 5, 0])", 4)),

    fn("longest_run", '''
def longest_run(items):
    """Return the length of the longest run of equal neighbouring items (0 for no items)."""
    if not items:
        return 0
    best = current = 1
    for i in range(1, len(items)):
        if items[i] == items[i - 1]:
            current += 1
            best = max(best, current)
        else:
            current = 1
    return best
''',
       ("longest_run([1, 1, 2, 2, 2, 3])", 3), ("longest_run([])", 0), ("longest_run([4])", 1), ("longest_run([1, 2, 3])", 1),
       ("longest_run(['a', 'a', 'b', 'a', 'a'])", 2), ("longest_run([5, 5, 5, 5])", 4)),

    fn("trim_extremes", '''
def trim_extremes(values):
    """Return values without one occurrence of its smallest and one of its largest value,
    keeping the order of the rest. Lists of fewer than 3 values give []."""
    if len(values) < 3:
        return []
    out = list(values)
    out.remove(min(out))
    out.remove(max(out))
    return out
''',
       ("trim_extremes([5, 1, 3, 9, 4])", [5, 3, 4]), ("trim_extremes([1, 2])", []), ("trim_extremes([2, 2, 2])", [2]),
       ("trim_extremes([1, 1, 5, 5])", [1, 5]), ("trim_extremes([3, 7, 5])", [5])),

    fn("interleave", '''
def interleave(a, b):
    """Alternate the items of a and b, starting with a; what is left of the longer list
    comes at the end: interleave([1, 2, 3], ["x"]) gives [1, "x", 2, 3]."""
    out = []
    n = min(len(a), len(b))
    for i in range(n):
        out.append(a[i])
        out.append(b[i])
    out.extend(a[n:])
    out.extend(b[n:])
    return out
''',
       ("interleave([1, 2, 3], ['x'])", [1, "x", 2, 3]), ("interleave([], [1, 2])", [1, 2]), ("interleave([1, 2], [3, 4])", [1, 3, 2, 4]),
       ("interleave(['a'], ['b', 'c', 'd'])", ["a", "b", "c", "d"]), ("interleave([], [])", [])),

    fn("transpose", '''
def transpose(matrix):
    """Return the transpose of a rectangular matrix given as a list of rows ([] for [])."""
    if not matrix:
        return []
    rows, cols = len(matrix), len(matrix[0])
    result = []
    for c in range(cols):
        result.append([matrix[r][c] for r in range(rows)])
    return result
''',
       ("transpose([[1, 2, 3], [4, 5, 6]])", [[1, 4], [2, 5], [3, 6]]), ("transpose([])", []), ("transpose([[7]])", [[7]]),
       ("transpose([[1], [2], [3]])", [[1, 2, 3]])),

    fn("last_index_of", '''
def last_index_of(items, value):
    """Return the index of the last occurrence of value in items, or -1."""
    for i in range(len(items) - 1, -1, -1):
        if items[i] == value:
            return i
    return -1
''',
       ("last_index_of([1, 2, 1, 3], 1)", 2), ("last_index_of([1, 2, 3], 4)", -1), ("last_index_of([], 1)", -1),
       ("last_index_of([5, 1, 2], 5)", 0), ("last_index_of([1, 2, 3], 3)", 2)),

    fn("split_evens_odds", '''
def split_evens_odds(numbers):
    """Return (evens, odds): the even and the odd numbers of the list, each in their original order."""
    evens = []
    odds = []
    for n in numbers:
        if n % 2 == 0:
            evens.append(n)
        else:
            odds.append(n)
    return evens, odds
''',
       ("split_evens_odds([1, 2, 3, 4])", ([2, 4], [1, 3])), ("split_evens_odds([])", ([], [])),
       ("split_evens_odds([-3, 0, 7])", ([0], [-3, 7])), ("split_evens_odds([2, 2])", ([2, 2], []))),

    fn("cumulative_max", '''
def cumulative_max(values):
    """Return, for each position, the largest value seen up to and including it."""
    out = []
    best = None
    for v in values:
        if best is None or v > best:
            best = v
        out.append(best)
    return out
''',
       ("cumulative_max([1, 3, 2, 5, 4])", [1, 3, 3, 5, 5]), ("cumulative_max([])", []),
       ("cumulative_max([-5, -7, -1])", [-5, -5, -1]), ("cumulative_max([0, 0])", [0, 0])),

    fn("sliding_window_max", '''
def sliding_window_max(values, k):
    """Return the maximum of every window of k consecutive values, left to right.

    Raises ValueError when k is not between 1 and len(values).
    """
    if k < 1 or k > len(values):
        raise ValueError("window size out of range")
    result = []
    for start in range(len(values) - k + 1):
        window = values[start:start + k]
        result.append(max(window))
    return result
''',
       ("sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3)", [3, 3, 5, 5, 6, 7]), ("sliding_window_max([4, 2], 2)", [4]),
       ("sliding_window_max([4, 2, 9], 1)", [4, 2, 9]), ("sliding_window_max([1, 2], 3)", Raises("ValueError")),
       ("sliding_window_max([1, 2], 0)", Raises("ValueError"))),

    fn("count_in_range", '''
def count_in_range(values, low, high):
    """Return how many values lie in the closed range [low, high]."""
    count = 0
    for v in values:
        if low <= v <= high:
            count += 1
    return count
''',
       ("count_in_range([1, 5, 10, 15], 5, 10)", 2), ("count_in_range([], 0, 1)", 0), ("count_in_range([3, 3], 3, 3)", 2),
       ("count_in_range([-2, 0, 2], -1, 1)", 1), ("count_in_range([1, 2, 3], 4, 9)", 0)),
]
