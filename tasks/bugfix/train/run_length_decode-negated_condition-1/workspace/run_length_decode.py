def run_length_decode(encoded):
    """Decode runs written as a count followed by a character: "3a1b2c" becomes "aaabcc".

    Counts may have several digits ("12x"). Raises ValueError when a count is missing.
    """
    out = []
    digits = ""
    for ch in encoded:
        if not ch.isdigit():
            digits += ch
        else:
            if digits == "":
                raise ValueError(f"missing count before {ch!r}")
            out.append(ch * int(digits))
            digits = ""
    return "".join(out)
