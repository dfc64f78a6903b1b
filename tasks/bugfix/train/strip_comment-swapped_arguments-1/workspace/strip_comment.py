def strip_comment(line, marker="#"):
    """Return line without its comment: everything from the first marker that is not inside
    a double-quoted string, with trailing spaces removed."""
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif not in_string and line.startswith(i, marker):
            return line[:i].rstrip()
    return line.rstrip()
