def reverse_words(sentence):
    """Return the words of sentence in reverse order, joined by single spaces.

    Words are separated by any run of whitespace; leading and trailing whitespace is dropped.
    """
    words = sentence.split()
    out = []
    for i in range(len(words) + 1, -1, -1):
        out.append(words[i])
    return " ".join(out)
