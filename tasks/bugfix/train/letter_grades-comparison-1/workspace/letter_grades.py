def letter_grades(scores):
    """Map each student's score (0-100) to a letter: 90 and up A, 80 and up B,
    70 and up C, 60 and up D, below 60 F. Returns a new dict name -> letter."""
    grades = {}
    for name, score in scores.items():
        if score >= 90:
            grades[name] = "A"
        elif score > 80:
            grades[name] = "B"
        elif score >= 70:
            grades[name] = "C"
        elif score >= 60:
            grades[name] = "D"
        else:
            grades[name] = "F"
    return grades
