# Display of money, volume and time for people (LCD, REPL, simulator). Integer
# maths only: 1 money unit = 1/1000 of the minor unit, so 100 000 units = 1.00.
import timeutil


def money(units, exact=False):
    """Two decimals, rounded down to the minor unit (floor), so a balance is
    never shown above what it is: 4.98674 -> "4.98", and a debt of a fraction
    of a cent -> "-0.01", never "-0.00". exact: every unit, five decimals
    with the zeros past the second dropped (a summary that must add up)."""
    if exact:
        u = -units if units < 0 else units
        frac = "%05d" % (u % 100_000)
        while len(frac) > 2 and frac[-1] == "0":
            frac = frac[:-1]
        return "%s%d.%s" % ("-" if units < 0 else "", u // 100_000, frac)
    cents = units // 1000              # floor, for negatives too
    sign = "-" if cents < 0 else ""
    cents = -cents if cents < 0 else cents
    return "%s%d.%02d" % (sign, cents // 100, cents % 100)


def volume(ml):
    """Cubic metres with litre resolution: 12.345 m3."""
    return "%d.%03d" % (ml // 1_000_000, (ml // 1000) % 1000)


def rate(mlph):
    """Flow in L/h with one decimal."""
    return "%d.%d" % (mlph // 1000, (mlph // 100) % 10)


def when(t, tz=0):
    """Unix time t as local date and time (tz: offset in seconds): 2026-03-14 09:30:00."""
    y, mo, d, h, mi, _ = timeutil.local_parts(t, tz)
    return "%04d-%02d-%02d %02d:%02d:%02d" % (y, mo, d, h, mi, (t + tz) % 60)
