def pad_left(text, width, fill=" "):
    """Return text right-aligned in a field of width characters, padded on the left with fill
    (a single character). Text longer than width is returned unchanged."""
    missing = width - len(text)
    if missing <= 0:
        return text
    return fill * missing + text
