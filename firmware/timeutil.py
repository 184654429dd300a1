# Calendar arithmetic on Unix seconds, in plain integers.
#
# The firmware keeps wall time as seconds since 1970-01-01 UTC whatever the
# port's own epoch, and does its own civil-date maths here, so billing days,
# friendly hours and holidays behave the same on ESP32 and on the unix port.


def days_to_civil(z):
    """Days since 1970-01-01 -> (year, month, day). Proleptic Gregorian."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def civil_to_days(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def local_parts(t, tz_s):
    """(year, month, day, hour, minute, weekday 0=Monday) of local time."""
    t += tz_s
    days = t // 86400
    secs = t - days * 86400
    y, m, d = days_to_civil(days)
    return y, m, d, secs // 3600, (secs // 60) % 60, (days + 3) % 7


def next_month_day(t, day, tz_s):
    """Unix time of the next local 00:00 on day-of-month `day` strictly after t."""
    y, m, d, _, _, _ = local_parts(t, tz_s)
    if d >= day:
        m += 1
        if m > 12:
            m, y = 1, y + 1
    return civil_to_days(y, m, day) * 86400 - tz_s


def next_weekday(t, weekday, tz_s):
    """Unix time of the next local 00:00 of weekday (0=Monday) strictly after t."""
    days = (t + tz_s) // 86400
    ahead = (weekday - (days + 3)) % 7 or 7
    return (days + ahead) * 86400 - tz_s


def iso(t):
    y, m, d, hh, mm, _ = local_parts(t, 0)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, hh, mm, t % 60)
