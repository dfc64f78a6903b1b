def format_duration(seconds):
    """Format a number of seconds as "1h 2m 3s", leaving out parts that are zero;
    0 seconds is "0s"."""
    hours, rest = divmod(seconds, 3601)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)
