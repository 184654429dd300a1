# Meter configuration: defaults, overridden by <state dir>/config.json.
#
# Money values are money units (1/1000 of the minor unit); volumes are litres
# unless the name says ml; times are seconds. The per-meter secrets live in a
# separate file (see provisioning) and never in this one.
import json

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
    "batt_grace_s": 604800,      # ... and close after this grace period (a week)
    "sensor_close": True,        # sensor cable cut: close, keep the reading
    "report_s": 3600,            # telemetry interval
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
    bad = []
    for k, v in raw.items():
        why = _check_loaded(k, v, cfg)
        if why is None:
            cfg[k] = v
        else:
            bad.append("%s (%s)" % (k, why))
    if bad:
        cfg["_error"] = "config.json: defaults kept for " + ", ".join(bad)
    return cfg


def _check_loaded(key, value, cfg):
    if key == "k":
        from metering.volume import check_k
        try:
            check_k(value[0], value[1])
        except (ValueError, TypeError, IndexError, KeyError):
            return "not a valid K-factor"
        return None if len(value) == 2 else "not a valid K-factor"
    if key == "install_seq":     # read-only at the REPL, but it must survive a reboot
        return None if isinstance(value, int) and 0 <= value < 1_000_000_000 else "out of range"
    if key == "tariff":
        from metering import tariff
        code, t = tariff.parse(value)
        return None if t is not None else "invalid tariff"
    return validate(key, value, cfg)


# -- validation and saving of single settings (the REPL's cfg(), provisioning) --
# Integer settings and their allowed ranges. Settings not listed here must
# have the type of their default; "tariff" and "k" cannot be set this way
# (a tariff comes signed from the head-end, K from calibration).
RANGES = {
    "region": (0, 65535), "debounce_us": (0, 200_000), "period_day": (1, 28),
    "tz": (-43200, 50400), "low1": (0, 100_000_000), "low2": (0, 100_000_000),
    "emergency": (0, 100_000_000), "max_balance": (0, 1_000_000_000),
    "max_topup": (0, 1_000_000_000), "save_l": (1, 1000), "save_s": (5, 86400),
    "poll_ms": (100, 10_000), "report_s": (10, 86400),
    "account": (0, 1_000_000_000), "install_seq": (0, 1_000_000_000), "leak_gap_s": (60, 86400), "leak_window_s": (0, 2_592_000),
    "burst_lph": (0, 100_000), "burst_s": (10, 3600), "closed_flow_ml": (0, 1_000_000),
    "batt_low_mv": (0, 20_000), "batt_hyst_mv": (0, 5000), "batt_grace_s": (0, 7_776_000),
}
READ_ONLY = ("tariff", "k", "install_seq")
EXTRA = {"production": False}          # settings with no entry in DEFAULTS
RESTART = ("meter_id", "region", "mqtt", "poll_ms", "debounce_us", "production")
KEEP_ON_RESET = ("meter_id", "region", "mqtt", "k", "production")


def validate(key, value, cfg=None):
    """None if `value` is acceptable for `key`, else the reason."""
    if key in READ_ONLY:
        return "read-only here"
    if key in DEFAULTS:
        default = DEFAULTS[key]
    elif key in EXTRA:
        default = EXTRA[key]
    else:
        return "unknown setting"
    if not _same_type(value, default):
        return "must be %s" % type(default).__name__
    if key in RANGES:
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            return "must be in %d..%d" % (lo, hi)
    cfg = cfg or dict(DEFAULTS)
    if key == "low2" and value > cfg["low1"] or key == "low1" and value < cfg["low2"]:
        return "low2 must not exceed low1"
    if key == "max_topup" and value > cfg["max_balance"]:
        return "max_topup must not exceed max_balance"
    if key == "meter_id":
        if not 1 <= len(value) <= 16 or not all(c.isalpha() or c.isdigit() or c in "-_" for c in value):
            return "1..16 letters, digits, - or _"
    elif key == "reopen" and value not in ("confirm", "auto"):
        return "'confirm' or 'auto'"
    elif key == "friendly_hours":
        if len(value) != 2 or not all(isinstance(h, int) and 0 <= h <= 23 for h in value):
            return "[start, end] hours 0..23"
    elif key == "friendly_days":
        if not all(isinstance(d, int) and 0 <= d <= 6 for d in value):
            return "weekdays 0 (Monday)..6"
    elif key == "friendly_dates":
        for d in value:
            if not (isinstance(d, str) and len(d) == 5 and d[2] == "-"
                    and d[:2].isdigit() and d[3:].isdigit()
                    and 1 <= int(d[:2]) <= 12 and 1 <= int(d[3:]) <= 31):
                return "list of 'MM-DD'"
    elif key == "mqtt":
        if not isinstance(value.get("host"), str) or not value["host"]:
            return "needs a host"
        p = value.get("port")
        if not isinstance(p, int) or not 1 <= p <= 65535:
            return "port 1..65535"
        if not isinstance(value.get("tls", False), bool):
            return "tls true/false"
        ka = value.get("keepalive", 60)
        if not isinstance(ka, int) or not 10 <= ka <= 3600:
            return "keepalive 10..3600 s"
    return None


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
