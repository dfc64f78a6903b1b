"""Dictionaries: counting, grouping, lookups."""

from bank import Raises, fn

FUNCTIONS = [
    fn("word_frequencies", '''
def word_frequencies(text):
    """Count the words of text, case-insensitively, ignoring the punctuation . , ! ? at
    either end of a word. Returns a dict word -> count, in order of first appearance."""
    counts = {}
    for raw in text.split():
        word = raw.strip(".,!?").lower()
        if not word:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts
''',
       ("word_frequencies('The cat saw the dog.')", {"the": 2, "cat": 1, "saw": 1, "dog": 1}), ("word_frequencies('')", {}),
       ("word_frequencies('Hi! hi? HI , ok')", {"hi": 3, "ok": 1}), ("word_frequencies('a a a')", {"a": 3})),

    fn("invert_mapping", '''
def invert_mapping(mapping):
    """Return a dict from each value of mapping to the sorted list of keys that map to it."""
    inverted = {}
    for key, value in mapping.items():
        if value not in inverted:
            inverted[value] = []
        inverted[value].append(key)
    for value in inverted:
        inverted[value].sort()
    return inverted
''',
       ("invert_mapping({'a': 1, 'b': 2, 'c': 1})", {1: ["a", "c"], 2: ["b"]}), ("invert_mapping({})", {}),
       ("invert_mapping({'z': 0, 'y': 0, 'x': 0})", {0: ["x", "y", "z"]}), ("invert_mapping({1: 'one'})", {"one": [1]})),

    fn("group_by_length", '''
def group_by_length(words):
    """Group words by their length: a dict length -> list of words of that length,
    each list in the order the words came, the lengths in increasing order."""
    groups = {}
    for word in words:
        groups.setdefault(len(word), []).append(word)
    return {length: groups[length] for length in sorted(groups)}
''',
       ("group_by_length(['hi', 'cat', 'to', 'dog', 'a'])", {1: ["a"], 2: ["hi", "to"], 3: ["cat", "dog"]}),
       ("group_by_length([])", {}), ("group_by_length(['', 'x'])", {0: [""], 1: ["x"]})),

    fn("merge_counts", '''
def merge_counts(a, b):
    """Add two dicts of counts key by key; keys whose total is 0 are left out."""
    merged = dict(a)
    for key, n in b.items():
        merged[key] = merged.get(key, 0) + n
    return {key: n for key, n in merged.items() if n != 0}
''',
       ("merge_counts({'x': 1, 'y': 2}, {'y': 3, 'z': 4})", {"x": 1, "y": 5, "z": 4}), ("merge_counts({}, {})", {}),
       ("merge_counts({'x': 2}, {'x': -2, 'w': 1})", {"w": 1}), ("merge_counts({'a': 1}, {})", {"a": 1}),
       ("merge_counts({}, {'b': 5})", {"b": 5})),

    fn("top_k", '''
def top_k(counts, k):
    """Return the k keys with the largest counts, largest first; ties go to the
    alphabetically smaller key. Fewer keys than k: all of them."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [key for key, _ in ranked[:k]]
''',
       ("top_k({'a': 5, 'b': 9, 'c': 7}, 2)", ["b", "c"]), ("top_k({'x': 1, 'y': 1, 'w': 1}, 2)", ["w", "x"]),
       ("top_k({}, 3)", []), ("top_k({'a': 2, 'b': 3}, 5)", ["b", "a"]), ("top_k({'a': 2}, 0)", [])),

    fn("char_histogram", '''
def char_histogram(text):
    """Return a dict letter -> count for the letters of text, lower-cased; anything
    that is not a letter is skipped. Keys are in alphabetical order."""
    counts = {}
    for ch in text.lower():
        if ch.isalpha():
            counts[ch] = counts.get(ch, 0) + 1
    return dict(sorted(counts.items()))
''',
       ("char_histogram('Hello!')", {"e": 1, "h": 1, "l": 2, "o": 1}), ("char_histogram('')", {}),
       ("char_histogram('a A 1')", {"a": 2}), ("char_histogram('cab')", {"a": 1, "b": 1, "c": 1})),

    fn("lookup_path", '''
def lookup_path(data, path, default=None):
    """Follow a dotted path through nested dicts: lookup_path({"a": {"b": 1}}, "a.b") is 1.

    Returns default when a key is missing or a value on the way is not a dict."""
    current = data
    for key in path.split("."):
        if not isinstance(current, dict) or key not in current:
            return default
        current = current[key]
    return current
''',
       ("lookup_path({'a': {'b': 1}}, 'a.b')", 1), ("lookup_path({'a': {'b': 1}}, 'a.c')", None),
       ("lookup_path({'a': {'b': 1}}, 'a.c', 0)", 0), ("lookup_path({'a': 5}, 'a.b', 'none')", "none"),
       ("lookup_path({'a': {'b': {'c': [1]}}}, 'a.b.c')", [1]), ("lookup_path({'x': 2}, 'x')", 2)),

    fn("diff_dicts", '''
def diff_dicts(old, new):
    """Compare two dicts. Returns (added, removed, changed): the sorted keys only in new,
    only in old, and in both with different values."""
    added = sorted(k for k in new if k not in old)
    removed = sorted(k for k in old if k not in new)
    changed = []
    for k in old:
        if k in new and old[k] != new[k]:
            changed.append(k)
    return added, removed, sorted(changed)
''',
       ("diff_dicts({'a': 1, 'b': 2}, {'b': 3, 'c': 4})", (["c"], ["a"], ["b"])), ("diff_dicts({}, {})", ([], [], [])),
       ("diff_dicts({'x': 1}, {'x': 1})", ([], [], [])), ("diff_dicts({'z': 0, 'y': 0}, {})", ([], ["y", "z"], [])),
       ("diff_dicts({'k': 1, 'j': 1}, {'k': 2, 'j': 2})", ([], [], ["j", "k"]))),

    fn("apply_orders", '''
def apply_orders(stock, orders):
    """Return a new stock dict after taking each (item, quantity) order from it.

    Raises KeyError for an unknown item and ValueError when an order asks for more
    than is left. The stock passed in is not changed."""
    remaining = dict(stock)
    for item, quantity in orders:
        if item not in remaining:
            raise KeyError(item)
        if quantity > remaining[item]:
            raise ValueError(f"only {remaining[item]} {item} left")
        remaining[item] -= quantity
    return remaining
''',
       ("apply_orders({'apple': 5, 'pear': 2}, [('apple', 3), ('pear', 2)])", {"apple": 2, "pear": 0}),
       ("apply_orders({'apple': 5}, [])", {"apple": 5}), ("apply_orders({'apple': 5}, [('apple', 2), ('apple', 3)])", {"apple": 0}),
       ("apply_orders({'apple': 1}, [('kiwi', 1)])", Raises("KeyError")),
       ("apply_orders({'apple': 1}, [('apple', 2)])", Raises("ValueError"))),

    fn("letter_grades", '''
def letter_grades(scores):
    """Map each student's score (0-100) to a letter: 90 and up A, 80 and up B,
    70 and up C, 60 and up D, below 60 F. Returns a new dict name -> letter."""
    grades = {}
    for name, score in scores.items():
        if score >= 90:
            grades[name] = "A"
        elif score >= 80:
            grades[name] = "B"
        elif score >= 70:
            grades[name] = "C"
        elif score >= 60:
            grades[name] = "D"
        else:
            grades[name] = "F"
    return grades
''',
       ("letter_grades({'ann': 95, 'bob': 80, 'cy': 79})", {"ann": "A", "bob": "B", "cy": "C"}),
       ("letter_grades({'dee': 60, 'ed': 59, 'flo': 90})", {"dee": "D", "ed": "F", "flo": "A"}), ("letter_grades({})", {}),
       ("letter_grades({'gus': 70, 'hal': 0, 'ida': 100})", {"gus": "C", "hal": "F", "ida": "A"})),

    fn("most_common_value", '''
def most_common_value(mapping):
    """Return the value that occurs most often among the values of mapping; on a tie,
    the one that occurs first. None for an empty mapping."""
    counts = {}
    for value in mapping.values():
        counts[value] = counts.get(value, 0) + 1
    best, best_count = None, 0
    for value, n in counts.items():
        if n > best_count:
            best, best_count = value, n
    return best
''',
       ("most_common_value({'a': 'x', 'b': 'y', 'c': 'x'})", "x"), ("most_common_value({})", None),
       ("most_common_value({'a': 1, 'b': 2})", 1), ("most_common_value({'a': 1, 'b': 2, 'c': 2})", 2),
       ("most_common_value({'k': 0})", 0)),

    fn("index_words", '''
def index_words(lines):
    """Build an index word -> list of the (1-based) line numbers it appears on, each
    number once, in increasing order. Words are compared in lower case."""
    index = {}
    for number, line in enumerate(lines, start=1):
        for word in line.lower().split():
            numbers = index.setdefault(word, [])
            if not numbers or numbers[-1] != number:
                numbers.append(number)
    return index
''',
       ("index_words(['a b', 'b c', 'B b'])", {"a": [1], "b": [1, 2, 3], "c": [2]}), ("index_words([])", {}),
       ("index_words(['', 'x'])", {"x": [2]}), ("index_words(['go go go'])", {"go": [1]})),

    fn("count_by_key", '''
def count_by_key(records, key):
    """Count the records (dicts) by the value they have under key; records without
    the key are counted under None."""
    counts = {}
    for record in records:
        value = record.get(key)
        counts[value] = counts.get(value, 0) + 1
    return counts
''',
       ("count_by_key([{'t': 'a'}, {'t': 'b'}, {'t': 'a'}], 't')", {"a": 2, "b": 1}), ("count_by_key([], 't')", {}),
       ("count_by_key([{'t': 1}, {}], 't')", {1: 1, None: 1}), ("count_by_key([{'u': 1}], 't')", {None: 1})),

    fn("nested_total", '''
def nested_total(data):
    """Return the sum of all numbers in a structure of nested dicts and lists
    (strings and other values are skipped; True and False are not numbers here)."""
    if isinstance(data, bool):
        return 0
    if isinstance(data, (int, float)):
        return data
    if isinstance(data, dict):
        return sum(nested_total(v) for v in data.values())
    if isinstance(data, list):
        return sum(nested_total(v) for v in data)
    return 0
''',
       ("nested_total({'a': 1, 'b': [2, 3, {'c': 4}]})", 10), ("nested_total([])", 0), ("nested_total({'x': 'text', 'y': 5})", 5),
       ("nested_total([True, 1, False])", 1), ("nested_total(7)", 7), ("nested_total([[1.5], {'z': [2.5]}])", 4.0)),
]
