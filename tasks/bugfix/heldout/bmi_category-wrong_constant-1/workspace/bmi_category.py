def bmi_category(weight_kg, height_m):
    """Return the BMI category for a weight and height: "underweight" below 18.5,
    "normal" below 25, "overweight" below 30, else "obese"."""
    if height_m <= 0:
        raise ValueError("height must be positive")
    bmi = weight_kg / (height_m * height_m)
    if bmi < 18.5:
        return "underweight"
    if bmi < 26:
        return "normal"
    if bmi < 30:
        return "overweight"
    return "obese"
