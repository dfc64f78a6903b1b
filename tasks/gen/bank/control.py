"""Loops and conditionals: rules with boundaries."""

from bank import Raises, fn

FUNCTIONS = [
    fn("fizzbuzz", '''
def fizzbuzz(n):
    """Return the FizzBuzz words for 1..n: "Fizz" for multiples of 3, "Buzz" for
    multiples of 5, "FizzBuzz" for both, else the number as a string."""
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        elif i % 5 == 0:
            out.append("Buzz")
        else:
            out.append(str(i))
    return out
''',
       ("fizzbuzz(5)", ["1", "2", "Fizz", "4", "Buzz"]), ("fizzbuzz(0)", []), ("fizzbuzz(1)", ["1"]),
       ("fizzbuzz(15)[-1]", "FizzBuzz"), ("fizzbuzz(15)[8:10]", ["Fizz", "Buzz"])),

    fn("shipping_cost", '''
def shipping_cost(weight_kg, express=False):
    """Return the shipping cost in cents: 500 up to 1 kg, 800 up to 5 kg, then 800 plus 100
    for each started kg above 5. Express doubles the price. Raises ValueError for a weight
    that is not positive."""
    if weight_kg <= 0:
        raise ValueError("weight must be positive")
    if weight_kg <= 1:
        cost = 500
    elif weight_kg <= 5:
        cost = 800
    else:
        extra = int(weight_kg - 5)
        if extra < weight_kg - 5:
            extra += 1
        cost = 800 + 100 * extra
    if express:
        cost *= 2
    return cost
''',
       ("shipping_cost(0.5)", 500), ("shipping_cost(1)", 500), ("shipping_cost(1.2)", 800), ("shipping_cost(5)", 800),
       ("shipping_cost(5.5)", 900), ("shipping_cost(7)", 1000), ("shipping_cost(2, express=True)", 1600),
       ("shipping_cost(0)", Raises("ValueError"))),

    fn("ticket_price", '''
def ticket_price(age, student=False):
    """Return the ticket price in euros: children under 4 are free, under 12 pay 5,
    65 and older pay 7, everyone else 12; students (12 and older) pay 8 unless a
    cheaper price applies."""
    if age < 4:
        return 0
    if age < 12:
        return 5
    if age >= 65:
        return 7
    if student:
        return 8
    return 12
''',
       ("ticket_price(3)", 0), ("ticket_price(4)", 5), ("ticket_price(11)", 5), ("ticket_price(12)", 12), ("ticket_price(30)", 12),
       ("ticket_price(20, student=True)", 8), ("ticket_price(65)", 7), ("ticket_price(70, student=True)", 7),
       ("ticket_price(64)", 12)),

    fn("sum_of_multiples", '''
def sum_of_multiples(limit):
    """Return the sum of the natural numbers below limit that are multiples of 3 or 5."""
    total = 0
    for n in range(1, limit):
        if n % 3 == 0 or n % 5 == 0:
            total += n
    return total
''',
       ("sum_of_multiples(10)", 23), ("sum_of_multiples(0)", 0), ("sum_of_multiples(1)", 0), ("sum_of_multiples(16)", 60),
       ("sum_of_multiples(6)", 8)),

    fn("days_in_month", '''
def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(month, year):
    """Return the number of days in month (1-12) of year, leap years included.

    Raises ValueError for a month outside 1-12."""
    if month < 1 or month > 12:
        raise ValueError(f"no month {month}")
    if month == 2:
        return 29 if is_leap(year) else 28
    if month in (4, 6, 9, 11):
        return 30
    return 31
''',
       ("days_in_month(1, 2023)", 31), ("days_in_month(2, 2023)", 28), ("days_in_month(2, 2024)", 29),
       ("days_in_month(2, 1900)", 28), ("days_in_month(2, 2000)", 29), ("days_in_month(4, 2023)", 30),
       ("days_in_month(12, 2023)", 31), ("days_in_month(13, 2023)", Raises("ValueError")),
       ("days_in_month(0, 2023)", Raises("ValueError"))),

    fn("password_strength", '''
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
        score += 1
    if any(c.islower() for c in password):
        score += 1
    if any(not c.isalnum() for c in password):
        score += 1
    if score <= 2:
        return "weak"
    return "medium" if score <= 4 else "strong"
''',
       ("password_strength('abc')", "weak"), ("password_strength('abcdefgh')", "weak"), ("password_strength('abcdefg1')", "medium"),
       ("password_strength('Abcdefg1')", "medium"), ("password_strength('Abcdef1!')", "strong"), ("password_strength('A1!')", "medium"),
       ("password_strength('')", "weak")),

    fn("parse_duration", '''
def parse_duration(text):
    """Parse a duration "HH:MM:SS" or "MM:SS" into seconds.

    Raises ValueError when a part is not a number, or minutes or seconds are 60 or more."""
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0"] + parts
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (int(p) for p in parts)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"not a duration: {text!r}")
    return hours * 3600 + minutes * 60 + seconds
''',
       ("parse_duration('01:02:03')", 3723), ("parse_duration('02:03')", 123), ("parse_duration('0:00:59')", 59),
       ("parse_duration('10:00:00')", 36000), ("parse_duration('1:60')", Raises("ValueError")),
       ("parse_duration('a:b')", Raises("ValueError")), ("parse_duration('1:2:3:4')", Raises("ValueError")),
       ("parse_duration('59:59')", 3599)),

    fn("format_duration", '''
def format_duration(seconds):
    """Format a number of seconds as "1h 2m 3s", leaving out parts that are zero;
    0 seconds is "0s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)
''',
       ("format_duration(3723)", "1h 2m 3s"), ("format_duration(0)", "0s"), ("format_duration(60)", "1m"),
       ("format_duration(3600)", "1h"), ("format_duration(59)", "59s"), ("format_duration(3601)", "1h 1s"),
       ("format_duration(7260)", "2h 1m")),

    fn("compare_versions", '''
def compare_versions(a, b):
    """Compare dotted version strings numerically: -1 if a < b, 0 if equal, 1 if a > b.

    Missing parts count as 0, so "1.2" equals "1.2.0" and "1.10" is newer than "1.9"."""
    xs = [int(p) for p in a.split(".")]
    ys = [int(p) for p in b.split(".")]
    while len(xs) < len(ys):
        xs.append(0)
    while len(ys) < len(xs):
        ys.append(0)
    for x, y in zip(xs, ys):
        if x < y:
            return -1
        if x > y:
            return 1
    return 0
''',
       ("compare_versions('1.2', '1.2.0')", 0), ("compare_versions('1.10', '1.9')", 1), ("compare_versions('1.9', '1.10')", -1),
       ("compare_versions('2', '1.99.99')", 1), ("compare_versions('0.1', '0.1.1')", -1), ("compare_versions('3.0.0', '3')", 0)),

    fn("traffic_light", '''
def traffic_light(color, seconds_left):
    """Tell a driver what to do: "go" on green, "stop" on red, and on amber "go" only when
    at most 1 second is left (too close to stop), else "stop". Raises ValueError for other colours."""
    if color == "green":
        return "go"
    if color == "red":
        return "stop"
    if color == "amber":
        if seconds_left <= 1:
            return "go"
        return "stop"
    raise ValueError(f"unknown colour {color!r}")
''',
       ("traffic_light('green', 5)", "go"), ("traffic_light('red', 0)", "stop"), ("traffic_light('amber', 1)", "go"),
       ("traffic_light('amber', 0)", "go"), ("traffic_light('amber', 2)", "stop"), ("traffic_light('blue', 1)", Raises("ValueError"))),

    fn("bmi_category", '''
def bmi_category(weight_kg, height_m):
    """Return the BMI category for a weight and height: "underweight" below 18.5,
    "normal" below 25, "overweight" below 30, else "obese"."""
    if height_m <= 0:
        raise ValueError("height must be positive")
    bmi = weight_kg / (height_m * height_m)
    if bmi < 18.5:
        return "underweight"
    if bmi < 25:
        return "normal"
    if bmi < 30:
        return "overweight"
    return "obese"
''',
       ("bmi_category(50, 1.8)", "underweight"), ("bmi_category(70, 1.75)", "normal"), ("bmi_category(85, 1.75)", "overweight"),
       ("bmi_category(100, 1.7)", "obese"), ("bmi_category(100, 2)", "overweight"), ("bmi_category(74, 2)", "normal"), ("bmi_category(72, 2)", "underweight"),
       ("bmi_category(60, 0)", Raises("ValueError"))),

    fn("count_until_negative", '''
def count_until_negative(values):
    """Return the sum and count of the values before the first negative one (zeros included),
    as a tuple (total, count)."""
    total = 0
    count = 0
    for v in values:
        if v < 0:
            break
        total += v
        count += 1
    return total, count
''',
       ("count_until_negative([3, 0, 4, -1, 5])", (7, 3)), ("count_until_negative([])", (0, 0)),
       ("count_until_negative([-2, 5])", (0, 0)), ("count_until_negative([1, 2])", (3, 2))),

    fn("season_of", '''
def season_of(month):
    """Return the meteorological season of a month (1-12) in the northern hemisphere:
    Dec-Feb "winter", Mar-May "spring", Jun-Aug "summer", Sep-Nov "autumn"."""
    if not 1 <= month <= 12:
        raise ValueError(f"no month {month}")
    if month == 12 or month <= 2:
        return "winter"
    if month <= 5:
        return "spring"
    if month <= 8:
        return "summer"
    return "autumn"
''',
       ("season_of(1)", "winter"), ("season_of(2)", "winter"), ("season_of(3)", "spring"), ("season_of(5)", "spring"),
       ("season_of(6)", "summer"), ("season_of(8)", "summer"), ("season_of(9)", "autumn"), ("season_of(11)", "autumn"),
       ("season_of(12)", "winter"), ("season_of(13)", Raises("ValueError"))),

    fn("water_bill", '''
def water_bill(cubic_meters):
    """Return the bill in cents for a month's water: the first 10 m3 cost 150 each,
    the next 20 m3 cost 200 each, everything above 30 m3 costs 300 each."""
    bill = 0
    remaining = cubic_meters
    for size, price in ((10, 150), (20, 200)):
        used = min(remaining, size)
        bill += used * price
        remaining -= used
    bill += remaining * 300
    return bill
''',
       ("water_bill(0)", 0), ("water_bill(5)", 750), ("water_bill(10)", 1500), ("water_bill(11)", 1700), ("water_bill(30)", 5500),
       ("water_bill(32)", 6100)),
]
