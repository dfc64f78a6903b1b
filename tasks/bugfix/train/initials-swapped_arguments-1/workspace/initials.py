def initials(full_name):
    """Return the upper-case initials of a name, each followed by a dot:
    "ada king lovelace" becomes "A.K.L.". Hyphenated parts count as separate names."""
    parts = full_name.replace(" ", "-").split()
    out = ""
    for part in parts:
        out += part[0].upper() + "."
    return out
