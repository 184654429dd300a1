"""Money as the meters count it: integers of money units, 1/1000 of the
currency's minor unit, so 100 000 units = 1.00 (docs/METERING.md "Units").
Shown and parsed with integer arithmetic only: no float ever holds money."""

UNITS = 100_000          # money units in one major unit
_DIGITS = 5              # decimal places of a money unit


def fmt(units, currency=""):
    """12345678 -> "123.45678", 150000 -> "1.50", -5 -> "-0.00005"; exact,
    at least 2 decimals, trailing zeros beyond them dropped. None -> "-"."""
    if units is None:
        return "-"
    sign = "-" if units < 0 else ""
    major, rest = divmod(abs(int(units)), UNITS)
    frac = f"{rest:0{_DIGITS}d}".rstrip("0").ljust(2, "0")
    return f"{sign}{major:,}.{frac}" + (f" {currency}" if currency else "")


def parse(text):
    """"5", "5.5", "5.00001" -> money units (int). ValueError for anything
    else: a sign, an exponent, more than 5 decimals, an empty string."""
    s = text.strip().replace(",", "")
    major, dot, frac = s.partition(".")
    if not major.isdigit() and not (dot and major == "" and frac):
        raise ValueError(f"not an amount: {text!r}")
    if frac and not frac.isdigit() or len(frac) > _DIGITS:
        raise ValueError(f"not an amount (at most {_DIGITS} decimals): {text!r}")
    return int(major or "0") * UNITS + int(frac.ljust(_DIGITS, "0") or "0")
