def mask_card_number(number):
    """Return a card number with every digit but the last four replaced by "*".

    Spaces and dashes are kept where they are; numbers with four digits or fewer are unchanged."""
    digits_seen = 0
    total_digits = sum(1 for ch in number if ch.isdigit())
    out = []
    for ch in number:
        if ch.isdigit():
            digits_seen += 1
        out.append(ch)
    return "".join(out)
