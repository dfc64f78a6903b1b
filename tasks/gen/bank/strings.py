"""Strings: parsing, formatting, counting."""

from bank import Raises, fn

FUNCTIONS = [
    fn("reverse_words", '''
def reverse_words(sentence):
    """Return the words of sentence in reverse order, joined by single spaces.

    Words are separated by any run of whitespace; leading and trailing whitespace is dropped.
    """
    words = sentence.split()
    out = []
    for i in range(len(words) - 1, -1, -1):
        out.append(words[i])
    return " ".join(out)
''',
       ("reverse_words('one two three')", "three two one"), ("reverse_words('  hello   world ')", "world hello"),
       ("reverse_words('single')", "single"), ("reverse_words('')", ""), ("reverse_words('a b')", "b a")),

    fn("is_palindrome", '''
def is_palindrome(text):
    """Return True if text reads the same backwards, ignoring case and anything
    that is not a letter or a digit."""
    chars = [c.lower() for c in text if c.isalnum()]
    i, j = 0, len(chars) - 1
    while i < j:
        if chars[i] != chars[j]:
            return False
        i += 1
        j -= 1
    return True
''',
       ("is_palindrome('racecar')", True), ("is_palindrome('A man, a plan, a canal: Panama')", True),
       ("is_palindrome('abca')", False), ("is_palindrome('')", True), ("is_palindrome('ab')", False),
       ("is_palindrome('No lemon, no melon')", True), ("is_palindrome('abcdba')", False)),

    fn("count_vowels", '''
def count_vowels(text):
    """Return how many vowels (a, e, i, o, u, in either case) text contains."""
    count = 0
    for ch in text:
        if ch.lower() in "aeiou":
            count += 1
    return count
''',
       ("count_vowels('hello')", 2), ("count_vowels('AEIOU xyz')", 5), ("count_vowels('')", 0), ("count_vowels('rhythm')", 0),
       ("count_vowels('Queue')", 4)),

    fn("run_length_encode", '''
def run_length_encode(text):
    """Encode text as runs: "aaabcc" becomes "3a1b2c". Returns "" for "". """
    if not text:
        return ""
    out = []
    current, count = text[0], 1
    for ch in text[1:]:
        if ch == current:
            count += 1
        else:
            out.append(f"{count}{current}")
            current, count = ch, 1
    out.append(f"{count}{current}")
    return "".join(out)
''',
       ("run_length_encode('aaabcc')", "3a1b2c"), ("run_length_encode('')", ""), ("run_length_encode('x')", "1x"),
       ("run_length_encode('abab')", "1a1b1a1b"), ("run_length_encode('zzzz')", "4z")),

    fn("run_length_decode", '''
def run_length_decode(encoded):
    """Decode runs written as a count followed by a character: "3a1b2c" becomes "aaabcc".

    Counts may have several digits ("12x"). Raises ValueError when a count is missing.
    """
    out = []
    digits = ""
    for ch in encoded:
        if ch.isdigit():
            digits += ch
        else:
            if digits == "":
                raise ValueError(f"missing count before {ch!r}")
            out.append(ch * int(digits))
            digits = ""
    return "".join(out)
''',
       ("run_length_decode('3a1b2c')", "aaabcc"), ("run_length_decode('')", ""), ("run_length_decode('12x')", "x" * 12),
       ("run_length_decode('1a1b')", "ab"), ("run_length_decode('ab')", Raises("ValueError"))),

    fn("caesar_shift", '''
def caesar_shift(text, shift):
    """Shift each ASCII letter of text by shift places in the alphabet, wrapping around and
    keeping its case; other characters are unchanged. A negative shift goes backwards."""
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - ord("a") + shift) % 26 + ord("a")))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - ord("A") + shift) % 26 + ord("A")))
        else:
            out.append(ch)
    return "".join(out)
''',
       ("caesar_shift('abc', 1)", "bcd"), ("caesar_shift('xyz', 3)", "abc"), ("caesar_shift('Hello, World!', 5)", "Mjqqt, Btwqi!"),
       ("caesar_shift('abc', -1)", "zab"), ("caesar_shift('Zz', 1)", "Aa"), ("caesar_shift('same', 26)", "same")),

    fn("longest_common_prefix", '''
def longest_common_prefix(words):
    """Return the longest string that every word in words starts with ("" for no words)."""
    if not words:
        return ""
    prefix = words[0]
    for word in words[1:]:
        n = 0
        while n < len(prefix) and n < len(word) and prefix[n] == word[n]:
            n += 1
        prefix = prefix[:n]
    return prefix
''',
       ("longest_common_prefix(['flower', 'flow', 'flight'])", "fl"), ("longest_common_prefix(['dog', 'car'])", ""),
       ("longest_common_prefix([])", ""), ("longest_common_prefix(['same', 'same'])", "same"),
       ("longest_common_prefix(['interview', 'internet', 'interval'])", "inter"), ("longest_common_prefix(['ab', 'abc'])", "ab"),
       ("longest_common_prefix(['abc', 'ab'])", "ab")),

    fn("truncate", '''
def truncate(text, width):
    """Return text unchanged if it fits in width characters, else its first characters
    followed by "..." so that the result is exactly width long (width is at least 3)."""
    if len(text) <= width:
        return text
    return text[:width - 3] + "..."
''',
       ("truncate('hello', 10)", "hello"), ("truncate('hello', 5)", "hello"), ("truncate('hello world', 8)", "hello..."),
       ("truncate('abcdef', 5)", "ab..."), ("truncate('abcd', 3)", "...")),

    fn("snake_to_camel", '''
def snake_to_camel(name):
    """Turn a snake_case name into camelCase: "max_line_length" becomes "maxLineLength".

    Empty parts (from doubled or leading underscores) are skipped."""
    parts = [p for p in name.split("_") if p]
    if not parts:
        return ""
    first = parts[0].lower()
    rest = [p[0].upper() + p[1:].lower() for p in parts[1:]]
    return first + "".join(rest)
''',
       ("snake_to_camel('max_line_length')", "maxLineLength"), ("snake_to_camel('name')", "name"),
       ("snake_to_camel('_private_value')", "privateValue"), ("snake_to_camel('a__b')", "aB"), ("snake_to_camel('___')", ""),
       ("snake_to_camel('HTTP_STATUS')", "httpStatus")),

    fn("camel_to_snake", '''
def camel_to_snake(name):
    """Turn a camelCase name into snake_case: "maxLineLength" becomes "max_line_length"."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper():
            if i > 0:
                out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)
''',
       ("camel_to_snake('maxLineLength')", "max_line_length"), ("camel_to_snake('name')", "name"),
       ("camel_to_snake('Name')", "name"), ("camel_to_snake('aB')", "a_b"), ("camel_to_snake('')", "")),

    fn("strip_comment", '''
def strip_comment(line, marker="#"):
    """Return line without its comment: everything from the first marker that is not inside
    a double-quoted string, with trailing spaces removed."""
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif not in_string and line.startswith(marker, i):
            return line[:i].rstrip()
    return line.rstrip()
''',
       ("strip_comment('x = 1  # set x')", "x = 1"), ("strip_comment('no comment  ')", "no comment"),
       ("strip_comment('s = \"a#b\"  # note')", 's = "a#b"'), ("strip_comment('# all comment')", ""),
       ("strip_comment('a = 2 // 3', '//')", "a = 2"), ("strip_comment('\"#\"')", '"#"')),

    fn("is_anagram", '''
def is_anagram(a, b):
    """Return True if a and b use the same letters the same number of times,
    ignoring case and spaces."""
    a = a.replace(" ", "").lower()
    b = b.replace(" ", "").lower()
    if len(a) != len(b):
        return False
    counts = {}
    for ch in a:
        counts[ch] = counts.get(ch, 0) + 1
    for ch in b:
        if counts.get(ch, 0) == 0:
            return False
        counts[ch] -= 1
    return True
''',
       ("is_anagram('listen', 'silent')", True), ("is_anagram('Dormitory', 'dirty room')", True),
       ("is_anagram('aab', 'abb')", False), ("is_anagram('abc', 'abcd')", False), ("is_anagram('', '')", True),
       ("is_anagram('night', 'thing')", True)),

    fn("first_unique_char", '''
def first_unique_char(text):
    """Return the index of the first character that occurs exactly once in text, or -1."""
    counts = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    for i, ch in enumerate(text):
        if counts[ch] == 1:
            return i
    return -1
''',
       ("first_unique_char('leetcode')", 0), ("first_unique_char('loveleetcode')", 2), ("first_unique_char('aabb')", -1),
       ("first_unique_char('')", -1), ("first_unique_char('aabbc')", 4)),

    fn("parse_key_values", '''
def parse_key_values(text):
    """Parse "key=value" pairs separated by semicolons into a dict.

    Spaces around keys and values are stripped, empty pairs are skipped, and a later key
    replaces an earlier one. Raises ValueError for a pair without "=".
    """
    result = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        if "=" not in pair:
            raise ValueError(f"not a key=value pair: {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result
''',
       ("parse_key_values('a=1;b=2')", {"a": "1", "b": "2"}), ("parse_key_values(' x = 10 ; ;y=z=w ')", {"x": "10", "y": "z=w"}),
       ("parse_key_values('')", {}), ("parse_key_values('k=1;k=2')", {"k": "2"}), ("parse_key_values('a=1;oops')", Raises("ValueError"))),

    fn("wrap_words", '''
def wrap_words(text, width):
    """Break text into lines of at most width characters, breaking only between words
    (a word longer than width gets a line of its own)."""
    lines = []
    current = ""
    for word in text.split():
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines
''',
       ("wrap_words('the quick brown fox', 10)", ["the quick", "brown fox"]), ("wrap_words('', 5)", []),
       ("wrap_words('a b c', 3)", ["a b", "c"]), ("wrap_words('abcdefgh ij', 4)", ["abcdefgh", "ij"]),
       ("wrap_words('one two', 7)", ["one two"])),

    fn("mask_card_number", '''
def mask_card_number(number):
    """Return a card number with every digit but the last four replaced by "*".

    Spaces and dashes are kept where they are; numbers with four digits or fewer are unchanged."""
    digits_seen = 0
    total_digits = sum(1 for ch in number if ch.isdigit())
    out = []
    for ch in number:
        if ch.isdigit():
            digits_seen += 1
            if digits_seen <= total_digits - 4:
                out.append("*")
                continue
        out.append(ch)
    return "".join(out)
''',
       ("mask_card_number('1234567812345678')", "************5678"), ("mask_card_number('1234 5678 9012')", "**** **** 9012"),
       ("mask_card_number('1234')", "1234"), ("mask_card_number('12345')", "*2345"), ("mask_card_number('')", "")),

    fn("count_overlapping", '''
def count_overlapping(text, sub):
    """Return how many times sub occurs in text, counting overlapping occurrences
    ("aa" occurs twice in "aaa"). An empty sub is counted 0 times."""
    if not sub:
        return 0
    count = 0
    for i in range(len(text) - len(sub) + 1):
        if text[i:i + len(sub)] == sub:
            count += 1
    return count
''',
       ("count_overlapping('aaa', 'aa')", 2), ("count_overlapping('abcabc', 'abc')", 2), ("count_overlapping('abc', 'd')", 0),
       ("count_overlapping('abc', '')", 0), ("count_overlapping('ab', 'ab')", 1), ("count_overlapping('a', 'ab')", 0)),

    fn("initials", '''
def initials(full_name):
    """Return the upper-case initials of a name, each followed by a dot:
    "ada king lovelace" becomes "A.K.L.". Hyphenated parts count as separate names."""
    parts = full_name.replace("-", " ").split()
    out = ""
    for part in parts:
        out += part[0].upper() + "."
    return out
''',
       ("initials('ada king lovelace')", "A.K.L."), ("initials('Grace Hopper')", "G.H."), ("initials('jean-luc picard')", "J.L.P."),
       ("initials('')", ""), ("initials('  cher ')", "C.")),

    fn("balanced_brackets", '''
def balanced_brackets(text):
    """Return True if every (, [ and { in text is closed by the matching bracket in the right
    order; other characters are ignored."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack[-1] != pairs[ch]:
                return False
            stack.pop()
    return len(stack) == 0
''',
       ("balanced_brackets('([]{})')", True), ("balanced_brackets('([)]')", False), ("balanced_brackets('')", True),
       ("balanced_brackets('(((')", False), ("balanced_brackets('x[1] + f(y)')", True), ("balanced_brackets(')(')", False),
       ("balanced_brackets('{[}')", False)),

    fn("title_case", '''
SMALL_WORDS = {"a", "an", "and", "the", "of", "in", "on", "to"}


def title_case(text):
    """Capitalise each word of text except small words (a, an, and, the, of, in, on, to),
    which stay lower case unless they are the first word."""
    words = text.lower().split()
    out = []
    for i, word in enumerate(words):
        if i > 0 and word in SMALL_WORDS:
            out.append(word)
        else:
            out.append(word[0].upper() + word[1:])
    return " ".join(out)
''',
       ("title_case('the lord of the rings')", "The Lord of the Rings"), ("title_case('WAR AND PEACE')", "War and Peace"),
       ("title_case('a tale')", "A Tale"), ("title_case('')", ""), ("title_case('gone to the sea')", "Gone to the Sea")),

    fn("pad_left", '''
def pad_left(text, width, fill=" "):
    """Return text right-aligned in a field of width characters, padded on the left with fill
    (a single character). Text longer than width is returned unchanged."""
    if len(fill) != 1:
        raise ValueError("fill must be a single character")
    missing = width - len(text)
    if missing <= 0:
        return text
    return fill * missing + text
''',
       ("pad_left('42', 5)", "   42"), ("pad_left('42', 5, '0')", "00042"), ("pad_left('hello', 3)", "hello"),
       ("pad_left('abc', 3)", "abc"), ("pad_left('', 2, '*')", "**"), ("pad_left('x', 4, '--')", Raises("ValueError"))),
]
