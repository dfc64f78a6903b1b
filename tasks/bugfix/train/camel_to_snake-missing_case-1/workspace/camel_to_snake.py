def camel_to_snake(name):
    """Turn a camelCase name into snake_case: "maxLineLength" becomes "max_line_length"."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper():
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)
