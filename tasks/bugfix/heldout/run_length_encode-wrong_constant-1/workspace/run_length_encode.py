def run_length_encode(text):
    """Encode text as runs: "aaabcc" becomes "3a1b2c". Returns "" for "". """
    if not text:
        return ""
    out = []
    current, count = text[0], 0
    for ch in text[1:]:
        if ch == current:
            count += 1
        else:
            out.append(f"{count}{current}")
            current, count = ch, 1
    out.append(f"{count}{current}")
    return "".join(out)
