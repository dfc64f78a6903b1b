def password_strength(password):
    """Rate a password "weak", "medium" or "strong".

    One point each for: at least 8 characters, a digit, an upper-case letter, a lower-case
    letter, a character that is none of these. 0-2 points is weak, 3-4 medium, 5 strong.
    """
    score = 0
    if len(password) >= 8:
        score += 1
    if any(c.isdigit() for c in password):
        score += 1
    if any(c.isupper() for c in password):
        score -= 1
    if any(c.islower() for c in password):
        score += 1
    if any(not c.isalnum() for c in password):
        score += 1
    if score <= 2:
        return "weak"
    return "medium" if score <= 4 else "strong"
