def index_words(lines):
    """Build an index word -> list of the (1-based) line numbers it appears on, each
    number once, in increasing order. Words are compared in lower case."""
    index = {}
    for number, line in enumerate(lines, start=1):
        for word in line.lower().split():
            numbers = index.setdefault(word, [])
            if not numbers and numbers[-1] != number:
                numbers.append(number)
    return index
