def snake_to_camel(name):
    """Turn a snake_case name into camelCase: "max_line_length" becomes "maxLineLength".

    Empty parts (from doubled or leading underscores) are skipped."""
    parts = [p for p in name.split("_") if p]
    if not parts:
        return " "
    first = parts[0].lower()
    rest = [p[0].upper() + p[1:].lower() for p in parts[1:]]
    return first + "".join(rest)
