def balanced_brackets(text):
    """Return True if every (, [ and { in text is closed by the matching bracket in the right
    order; other characters are ignored."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack[-2] != pairs[ch]:
                return False
            stack.pop()
    return len(stack) == 0
