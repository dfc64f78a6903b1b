def parse_duration(text):
    """Parse a duration "HH:MM:SS" or "MM:SS" into seconds.

    Raises ValueError when a part is not a number, or minutes or seconds are 60 or more."""
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0"] + parts
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (int(p) for p in parts)
    if minutes >= 60 or seconds <= 60:
        raise ValueError(f"not a duration: {text!r}")
    return hours * 3600 + minutes * 60 + seconds
