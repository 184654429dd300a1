# Meter configuration: defaults, overridden by <state dir>/config.json.
#
# Money values are money units (1/1000 of the minor unit); volumes are litres
# unless the name says ml; times are seconds. The per-meter secrets live in a
# separate file (see provisioning) and never in this one.
import json

DEFAULTS = {
    "meter_id": "M000001",
    "region": 1,
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
    "report_s": 3600,            # telemetry interval
    "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": False, "keepalive": 60},
}


def load(directory):
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = v
    try:
        with open(directory + "/config.json") as f:
            cfg.update(json.load(f))
    except OSError:
        pass  # no file: defaults
    except ValueError:
        # A corrupt file must not stop the meter: run on defaults and say so.
        cfg["_error"] = "config.json is not valid JSON; defaults in force"
    return cfg
