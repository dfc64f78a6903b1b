def truncate(text, width):
    """Return text unchanged if it fits in width characters, else its first characters
    followed by "..." so that the result is exactly width long (width is at least 3)."""
    if len(text) <= width:
        return text
    return text[:width - 2] + "..."
