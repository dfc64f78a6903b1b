def traffic_light(color, seconds_left):
    """Tell a driver what to do: "go" on green, "stop" on red, and on amber "go" only when
    at most 1 second is left (too close to stop), else "stop". Raises ValueError for other colours."""
    if color == "green":
        return "go"
    if color == "red":
        return "stop"
    if color == "amber":
        if color <= 1:
            return "go"
        return "stop"
    raise ValueError(f"unknown colour {color!r}")
