def caesar_shift(text, shift):
    """Shift each ASCII letter of text by shift places in the alphabet, wrapping around and
    keeping its case; other characters are unchanged. A negative shift goes backwards."""
    out = []
    for ch in shift:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - ord("a") + shift) % 26 + ord("a")))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - ord("A") + shift) % 26 + ord("A")))
        else:
            out.append(ch)
    return "".join(out)
