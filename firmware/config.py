# Meter configuration: defaults, overridden by <state dir>/config.json.
#
# Money values are money units (1/1000 of the minor unit); volumes are litres
# unless the name says ml; times are seconds. The per-meter secrets live in a
# separate file (see provisioning) and never in this one.
import json

import codes

DEFAULTS = {
    "meter_id": "M000001",
    "region": 1,
    "account": 0,                # bound by the installation card ...
    "install_seq": 0,            # ... whose sequence must be newer each time
    "k": [1, 1],                 # K-factor, pulses per litre, as num/den
    "debounce_us": 0,            # minimum pulse interval on the IRQ path
    "tariff": {"v": 1, "at": 0, "b": [[0, 350_000]], "sc": 0},
    "period_day": 1,             # billing period rolls over on this day, 00:00 local
    "tz": 0,                     # local time offset, seconds east of UTC
    "low1": 1_000_000,           # first low-credit alarm (10.00)
    "low2": 300_000,             # second low-credit alarm (3.00)
    "emergency": 500_000,        # emergency credit granted on request (5.00)
    "max_balance": 900_000_000,  # 9000.00
    "max_topup": 500_000_000,    # 5000.00
    "reopen": "confirm",         # after a top-up: "confirm" (tap/button) or "auto"
    "friendly_hours": [20, 8],   # local hours [start, end) when no cut-off happens
    "friendly_days": [5, 6],     # weekdays (0=Monday) with no cut-off
    "friendly_dates": [],        # ["MM-DD", ...] holidays with no cut-off
    "friendly_debt_max": 500_000,  # debt allowed in a friendly period (5.00); then the valve closes
    "save_l": 10,                # save state at least every this many litres of flow
    "save_s": 60,                # ... or this many seconds while water flows
    "poll_ms": 1000,             # meter loop period
    "leak_gap_s": 600,           # a zero-flow gap this long rules out a leak ...
    "leak_window_s": 86400,      # ... if none is seen in this window: leak (0: off)
    "leak_close": False,
    "burst_lph": 3125,           # burst above this flow (Q4 of a DN15 meter) ... (0: off)
    "burst_s": 60,               # ... sustained this long
    "burst_close": True,
    "closed_flow_ml": 5000,      # flow beyond this after a close is a valve fault / tamper
    "tamper_close": False,       # CJ/T 133 allows either: close, or keep working
    "batt_low_mv": 3300,         # low battery: warn ...
    "batt_hyst_mv": 200,
    "ota_min_mv": 3600,          # battery boards take a firmware update only at or above (docs/OTA.md)
    "ota_min_pct": 25,           # ... and with this much of the cell's charge left (docs/OTA.md §9)
    "batt_grace_s": 604800,      # ... and close after this grace period (a week)
    "sensor_close": True,        # sensor cable cut: close, keep the reading
    "report_s": 3600,            # telemetry interval
    "window_s": 86400,           # battery boards: reporting windows this far apart (docs/BATTERY.md §7)
    "display_sleep_s": 30,       # the display powers down after this long untouched (0: never)
    "display_lang": "en",        # a dot-matrix display's language: "en" or "fr" (docs/DISPLAY.md)
    "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": False, "keepalive": 60,
             "timeout_ms": 5000,      # deadline of every socket operation
             "backoff_max_s": 300},   # reconnect back-off ceiling (docs/PROTOCOL.md)
}


def load(directory):
    """Defaults, overridden by every valid setting in config.json. A setting
    that fails validation is left at its default and named in cfg["_error"]
    (main logs EV_CONFIG): a bad file degrades the meter, never stops it."""
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = v
    try:
        with open(directory + "/config.json") as f:
            raw = json.load(f)
    except OSError:
        return cfg  # no file: defaults
    except ValueError:
        cfg["_error"] = "config.json is not valid JSON; defaults in force"
        return cfg
    if not isinstance(raw, dict):
        cfg["_error"] = "config.json is not an object; defaults in force"
        return cfg
    # each setting on its own first, then the rules between two settings
    # against the file's other settings, so the file's order does not matter
    bad = []
    for k, v in raw.items():
        why = _check_loaded(k, v)
        if why is None:
            cfg[k] = v
        else:
            bad.append("%s (%s)" % (k, why))
    for hi, lo in PAIRS:
        why = _check_pair(lo, cfg[lo], cfg)[1]
        if why is not None:        # a pair that contradicts itself: both stay at their defaults
            bad.append("%s, %s (%s)" % (hi, lo, why))
            cfg[hi], cfg[lo] = DEFAULTS[hi], DEFAULTS[lo]
    if bad:
        cfg["_error"] = "config.json: defaults kept for " + ", ".join(bad)
    return cfg


def _check_loaded(key, value):
    if key == "k":
        from metering.volume import check_k
        try:
            check_k(value[0], value[1])
        except (ValueError, TypeError, IndexError, KeyError):
            return "not a valid K-factor"
        return None if len(value) == 2 else "not a valid K-factor"
    if key == "install_seq":     # read-only at the REPL, but it must survive a reboot
        lo, hi = RANGES[key]
        return None if isinstance(value, int) and lo <= value <= hi else "out of range"
    if key == "tariff":
        from metering import tariff
        code, t = tariff.parse(value)
        return None if t is not None else "invalid tariff"
    return check(key, value, pair=False)[1]


# -- the one table of settings (the REPL's cfg(), MQTT cfg, config.load) --
# Integer settings and their allowed ranges; for a list setting, the range
# of its items. docs/PROTOCOL.md §4.5 states the same numbers, and
# tests/mp/test_contract.py reads them from there and compares. Settings not
# listed must have the type of their default; "tariff" and "k" cannot be set
# this way (a tariff comes signed from the head-end, K from calibration).
RANGES = {
    "region": (0, 65535), "debounce_us": (0, 200_000), "period_day": (1, 28),
    "tz": (-43200, 50400), "low1": (0, 2_000_000_000), "low2": (0, 2_000_000_000),
    "emergency": (0, 100_000_000), "max_balance": (0, 2_000_000_000),
    "max_topup": (1, 2_000_000_000), "save_l": (1, 1000), "save_s": (10, 3600),
    "poll_ms": (100, 10_000), "report_s": (10, 86400), "window_s": (3600, 86400),
    "account": (0, 0xFFFFFFFF), "install_seq": (0, 0xFFFFFFFF),   # u32, as on the card
    "leak_gap_s": (60, 86400),
    "leak_window_s": (0, 2_592_000), "burst_lph": (0, 100_000), "burst_s": (10, 3600),
    "closed_flow_ml": (0, 1_000_000), "batt_low_mv": (0, 20_000), "batt_hyst_mv": (0, 5000),
    "ota_min_mv": (0, 20_000), "ota_min_pct": (0, 100),
    "batt_grace_s": (0, 7_776_000), "friendly_debt_max": (0, 100_000_000),
    "friendly_hours": (0, 23), "friendly_days": (0, 6),
    "display_sleep_s": (0, 3600),
}
# list settings: key -> (least, most) items
ITEMS = {"friendly_hours": (2, 2), "friendly_days": (0, 7), "friendly_dates": (0, 24)}
# What a head-end may set over MQTT, numbered (the number is EV_CONFIG's
# argument when one of them changes; the order never changes).
REMOTE = ("report_s", "low1", "low2", "emergency", "max_balance", "max_topup", "save_l",
          "save_s", "tz", "period_day", "friendly_hours", "friendly_days",
          "friendly_dates", "reopen", "friendly_debt_max", "window_s")
READ_ONLY = ("tariff", "k", "install_seq")
EXTRA = {"production": False}          # settings with no entry in DEFAULTS
RESTART = ("meter_id", "region", "mqtt", "poll_ms", "debounce_us", "production", "display_lang")
# identity and the installation binding survive a factory reset: clearing
# account/install_seq would let a previous tenant's installation card rebind
KEEP_ON_RESET = ("meter_id", "region", "account", "install_seq", "mqtt", "k", "production")


def number(key):
    """EV_CONFIG's argument for a change of key: its number in REMOTE (from
    1), or 0 for a setting only the REPL changes."""
    return REMOTE.index(key) + 1 if key in REMOTE else 0


def validate(key, value, cfg=None):
    """None if `value` is acceptable for `key`, else the reason."""
    return check(key, value, cfg)[1]


def check(key, value, cfg=None, remote=False, pair=True):
    """(result code, reason or None) of setting key to value: UNKNOWN (no
    such setting; with remote, one a head-end may not set), REFUSED
    (read-only), FORMAT (wrong JSON type), RANGE (out of range, or, with
    pair, against another setting in cfg), ACCEPTED."""
    if remote and key not in REMOTE:
        return codes.UNKNOWN, "not settable remotely"
    if key in READ_ONLY:
        return codes.REFUSED, "read-only here"
    if key in DEFAULTS:
        default = DEFAULTS[key]
    elif key in EXTRA:
        default = EXTRA[key]
    else:
        return codes.UNKNOWN, "unknown setting"
    if not _same_type(value, default):
        return codes.FORMAT, "must be %s" % type(default).__name__
    if key in ITEMS:
        return _check_list(key, value)
    if key in RANGES:
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            return codes.RANGE, "must be in %d..%d" % (lo, hi)
    if key == "meter_id":
        if not 1 <= len(value) <= 16 or not all(c.isalpha() or c.isdigit() or c in "-_" for c in value):
            return codes.RANGE, "1..16 letters, digits, - or _"
    elif key == "reopen" and value not in ("confirm", "auto"):
        return codes.RANGE, "'confirm' or 'auto'"
    elif key == "display_lang" and value not in ("en", "fr"):
        return codes.RANGE, "'en' or 'fr'"
    elif key == "mqtt":
        return _check_mqtt(value)
    return _check_pair(key, value, cfg or DEFAULTS) if pair else (codes.ACCEPTED, None)


PAIRS = (("low1", "low2"), ("max_balance", "max_topup"))   # (upper, lower) bound together


def _check_pair(key, value, cfg):
    # rules between two settings, against the values in force in cfg
    if key == "low2" and value > cfg["low1"] or key == "low1" and value < cfg["low2"]:
        return codes.RANGE, "low2 must not exceed low1"
    if key == "max_topup" and value > cfg["max_balance"] or \
            key == "max_balance" and value < cfg["max_topup"]:
        return codes.RANGE, "max_topup must not exceed max_balance"
    return codes.ACCEPTED, None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_list(key, value):
    least, most = ITEMS[key]
    if key == "friendly_dates":
        for d in value:
            if not (isinstance(d, str) and len(d) == 5 and d[2] == "-"
                    and d[:2].isdigit() and d[3:].isdigit()):
                return codes.FORMAT, "list of 'MM-DD'"
    elif not all(_is_int(v) for v in value):
        return codes.FORMAT, "list of integers"
    if key == "friendly_hours" and len(value) != 2:
        return codes.FORMAT, "[start, end] hours"
    if not least <= len(value) <= most:
        return codes.RANGE, "%d..%d items" % (least, most)
    if key == "friendly_dates":
        for d in value:
            if not (1 <= int(d[:2]) <= 12 and 1 <= int(d[3:]) <= 31):
                return codes.RANGE, "month 01..12, day 01..31"
        return codes.ACCEPTED, None
    lo, hi = RANGES[key]
    if not all(lo <= v <= hi for v in value):
        return codes.RANGE, "items in %d..%d" % (lo, hi)
    return codes.ACCEPTED, None


def _check_mqtt(value):
    if not isinstance(value.get("host"), str) or not value["host"]:
        return codes.FORMAT, "needs a host"
    p = value.get("port")
    if not _is_int(p) or not 1 <= p <= 65535:
        return codes.RANGE, "port 1..65535"
    if not isinstance(value.get("tls", False), bool):
        return codes.FORMAT, "tls true/false"
    ka = value.get("keepalive", 60)
    if not _is_int(ka) or not 10 <= ka <= 3600:
        return codes.RANGE, "keepalive 10..3600 s"
    return codes.ACCEPTED, None


def _same_type(a, b):
    return type(a) is type(b)


def save(directory, cfg):
    """Write the settings that differ from the defaults to config.json
    (new file, then rename: a power cut leaves the old or the new file)."""
    out = {}
    for k, v in cfg.items():
        if k.startswith("_"):
            continue
        if k in DEFAULTS and DEFAULTS[k] == v or k in EXTRA and EXTRA[k] == v:
            continue
        out[k] = v
    path = directory + "/config.json"
    with open(path + ".new", "w") as f:
        json.dump(out, f)
    import os
    os.rename(path + ".new", path)
