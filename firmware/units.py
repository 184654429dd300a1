# Display of money and volume for people (REPL, simulator). Integer maths only:
# 1 money unit = 1/1000 of the minor unit, so 100 000 units = 1.00.


def money(units):
    sign = "-" if units < 0 else ""
    u = -units if units < 0 else units
    cents = u // 1000
    return "%s%d.%02d" % (sign, cents // 100, cents % 100)


def volume(ml):
    """Cubic metres with litre resolution: 12.345 m3."""
    return "%d.%03d" % (ml // 1_000_000, (ml // 1000) % 1000)


def rate(mlph):
    """Flow in L/h with one decimal."""
    return "%d.%d" % (mlph // 1000, (mlph // 100) % 10)
