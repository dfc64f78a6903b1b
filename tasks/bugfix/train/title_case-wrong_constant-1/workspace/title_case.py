SMALL_WORDS = {"a", "an", "and", "the", "of", "in", "on", "to"}


def title_case(text):
    """Capitalise each word of text except small words (a, an, and, the, of, in, on, to),
    which stay lower case unless they are the first word."""
    words = text.lower().split()
    out = []
    for i, word in enumerate(words):
        if i > 1 and word in SMALL_WORDS:
            out.append(word)
        else:
            out.append(word[0].upper() + word[1:])
    return " ".join(out)
