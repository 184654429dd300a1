# Commands the head-end sends the meter over MQTT (docs/PROTOCOL.md §4-5):
# unsealing, parsing, validation, the replay counter and dispatch to the
# Meter. The transport (comms/link.py) hands each message here and publishes
# the ack it gets back; nothing here touches a socket.
import json
import os

import codes
import config
from comms import codec

# Settings a head-end may change: key -> (kind, low, high).
#   "i": int in [low, high]; "hours": [start, end] hours; "days": weekdays;
#   "dates": ["MM-DD", ...]; "reopen": "confirm" or "auto".
SETTABLE = {
    "report_s": ("i", 60, 86400),
    "low1": ("i", 0, 2_000_000_000),
    "low2": ("i", 0, 2_000_000_000),
    "emergency": ("i", 0, 100_000_000),
    "max_balance": ("i", 0, 2_000_000_000),
    "max_topup": ("i", 1, 2_000_000_000),
    "save_l": ("i", 1, 1000),
    "save_s": ("i", 10, 3600),
    "tz": ("i", -50400, 50400),
    "period_day": ("i", 1, 28),
    "friendly_hours": ("hours", 0, 23),
    "friendly_days": ("days", 0, 6),
    "friendly_dates": ("dates", 0, 24),
    "reopen": ("reopen", 0, 0),
}
CONFIG_KEYS = ("report_s", "low1", "low2", "emergency", "max_balance", "max_topup", "save_l",
               "save_s", "tz", "period_day", "friendly_hours", "friendly_days",
               "friendly_dates", "reopen")

TIME_MIN = 1577836800   # 2020-01-01
TIME_MAX = 4102444800   # 2100-01-01


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate(key, value):
    """Result code of setting config key to value."""
    spec = SETTABLE.get(key)
    if spec is None:
        return codes.UNKNOWN
    kind, lo, hi = spec
    if kind == "i":
        if not _is_int(value):
            return codes.FORMAT
        return codes.ACCEPTED if lo <= value <= hi else codes.RANGE
    if kind == "reopen":
        return codes.ACCEPTED if value in ("confirm", "auto") else codes.RANGE
    if not isinstance(value, list):
        return codes.FORMAT
    if kind == "hours":
        if len(value) != 2 or not (_is_int(value[0]) and _is_int(value[1])):
            return codes.FORMAT
        return codes.ACCEPTED if lo <= value[0] <= hi and lo <= value[1] <= hi else codes.RANGE
    if kind == "days":
        if len(value) > 7 or not all(_is_int(d) for d in value):
            return codes.FORMAT
        return codes.ACCEPTED if all(lo <= d <= hi for d in value) else codes.RANGE
    # dates
    if len(value) > hi:
        return codes.RANGE
    for d in value:
        if not isinstance(d, str) or len(d) != 5 or d[2] != "-":
            return codes.FORMAT
        try:
            mo, day = int(d[:2]), int(d[3:])
        except ValueError:
            return codes.FORMAT
        if not (1 <= mo <= 12 and 1 <= day <= 31):
            return codes.RANGE
    return codes.ACCEPTED


def _echo_n(msg):
    """The counter of a command whose signature failed, only to let the
    sender match the ack; nothing else of it is trusted."""
    try:
        n = json.loads(msg[:-65])["n"]
        return n if _is_int(n) and 0 < n <= 0xFFFFFFFF else 0
    except (ValueError, TypeError, KeyError, IndexError):
        return 0


class Commands:
    """The meter's side of the command topics: handle(topic, msg) returns the
    ack payload to publish, or None."""

    def __init__(self, cfg, meter, clock, t_cmd, t_tariff, region_key=None, meter_key=None,
                 state_dir=None, outbox=None):
        self.cfg = cfg
        self.meter = meter
        self.clock = clock
        self.t_cmd = t_cmd
        self.t_tariff = t_tariff
        self._region_key = region_key
        self._meter_key = meter_key
        self.state_dir = state_dir
        self.outbox = outbox            # only read: its count goes into get state
        self.on_config = None           # fn(key, value) after a setting changed
        self.rejected = 0
        self.cmd_n = self._load_n()

    # ---------------- persistence of the command counter ----------------
    def _n_path(self):
        return (self.state_dir or ".") + "/cmd_n"

    def _load_n(self):
        try:
            with open(self._n_path()) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _save_n(self, n):
        p = self._n_path()
        with open(p + ".new", "w") as f:
            f.write("%d" % n)
        os.rename(p + ".new", p)
        self.cmd_n = n

    # ---------------- incoming ----------------
    def handle(self, topic, msg):
        if topic == self.t_cmd:
            n, code, val, detail = self._command(msg)
            return codec.ack(n, code, val, detail)
        if topic == self.t_tariff:
            code, val = self._region_tariff(msg)
            if code == codes.ACCEPTED:
                return codec.ack(0, code, val)
        return None

    def _region_tariff(self, msg):
        code, body = codec.unseal(self._region_key, self.t_tariff, msg)
        if code != codes.ACCEPTED:
            self.meter.log.add(codes.EV_TARIFF_REJECTED, code)
            return code, 0
        try:
            d = json.loads(body)
            return self.meter.stage_tariff(d), d.get("v", 0)
        except (ValueError, TypeError, AttributeError):
            self.meter.log.add(codes.EV_TARIFF_REJECTED, codes.FORMAT)
            return codes.FORMAT, 0

    def _command(self, msg):
        """(n, code, val, detail) of one signed command."""
        code, body = codec.unseal(self._meter_key, self.t_cmd, msg)
        n = 0
        d = None
        if code == codes.ACCEPTED:
            try:
                d = json.loads(body)
                n = d["n"]
                op = d["op"]
            except (ValueError, TypeError, KeyError, IndexError):
                code = codes.FORMAT
        if code == codes.ACCEPTED and not (_is_int(n) and 0 < n <= 0xFFFFFFFF and isinstance(op, str)):
            code, n = codes.RANGE, 0
        if code == codes.ACCEPTED and n <= self.cmd_n:
            self._rejected(codes.OLD)
            return n, codes.OLD, self.cmd_n, None
        if code == codes.ACCEPTED:
            x = d.get("x", 0)
            if _is_int(x) and x and self.clock.time() > x:
                code = codes.OLD
        if code == codes.SIGNATURE:
            n = _echo_n(msg)
        if code != codes.ACCEPTED:
            self._rejected(code)
            return n, code, self.cmd_n, None
        try:
            self._save_n(n)   # before acting: a replay after a crash is still refused
        except OSError:
            return n, codes.STORAGE, 0, None
        try:
            code, val, detail = self._dispatch(op, d)
        except (KeyError, TypeError, ValueError, AttributeError):
            code, val, detail = codes.FORMAT, 0, None
        if code not in (codes.ACCEPTED, codes.USED):
            self._rejected(code)
        return n, code, val, detail

    def _rejected(self, code):
        self.rejected += 1
        self.meter.log.add(codes.EV_COMMAND_REJECTED, code)

    def _dispatch(self, op, d):
        m = self.meter
        if op == "topup":
            code = m.apply_credit("mqtt", d["a"], d["s"], d["v"])
            return code, m.balance, None
        if op == "valve":
            fn = getattr(m, "request_valve", None)
            if fn is None:
                # TODO(valve): Meter.request_valve(open, source, override) is
                # being added by the valve work; until then remote valve
                # commands are refused, never half-applied.
                return codes.REFUSED, 0, None
            code = fn(bool(d["o"]), "mqtt", bool(d.get("f", 0)))
            return code, 1 if m.want_open else 0, None
        if op == "valvetest":
            fn = getattr(m, "valve_test", None)
            return (fn("mqtt", bool(d.get("f", 0))) if fn else codes.UNKNOWN), 0, None
        if op == "cfg":
            return self._configure(d["k"], d["v"]), 0, None
        if op == "time":
            t = d["t"]
            if not _is_int(t):
                return codes.FORMAT, 0, None
            if not TIME_MIN <= t < TIME_MAX:
                return codes.RANGE, 0, None
            # the meter's own clock setting: a step back re-derives the
            # billing period's end, and the change is saved
            return m.set_time(t), t, None
        if op == "tariff":
            tar = d["tar"]
            return m.stage_tariff(tar), tar.get("v", 0), None
        if op == "emergency":
            fn = getattr(m, "request_emergency", None)
            return (fn() if fn else codes.UNKNOWN), m.balance, None
        if op == "get":
            return self._get(d.get("w", "state"), d)
        return codes.UNKNOWN, 0, None

    def _configure(self, key, value):
        code = validate(key, value)
        if code != codes.ACCEPTED:
            return code
        # the same rules as the technician's REPL (e.g. low2 <= low1)
        if config.validate(key, value, self.meter.cfg) is not None:
            return codes.RANGE
        # saved first, applied after: a STORAGE answer means nothing changed
        try:
            self._persist_cfg(key, value)
        except Exception:  # noqa: BLE001
            return codes.STORAGE
        fn = getattr(self.meter, "configure", None)
        if fn is not None:
            code = fn(key, value)
            if code != codes.ACCEPTED:
                return code
        else:
            self.meter.cfg[key] = value
            self.meter.log.add(codes.EV_CONFIG, CONFIG_KEYS.index(key) + 1)
        self.cfg[key] = value
        if self.on_config is not None:
            self.on_config(key, value)
        return codes.ACCEPTED

    def _persist_cfg(self, key, value):
        # Overrides live in <state_dir>/config.json (config.load reads them).
        p = (self.state_dir or ".") + "/config.json"
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError):
            d = {}
        d[key] = value
        with open(p + ".new", "w") as f:
            json.dump(d, f)
        os.rename(p + ".new", p)

    def _get(self, what, d):
        m = self.meter
        if what == "state":
            s = m.snapshot()
            s["ob"] = self.outbox.count if self.outbox is not None else 0
            s["n"] = self.cmd_n
            return codes.ACCEPTED, m.balance, s
        if what == "log":
            f = d.get("f", 0)
            evs = [list(e) for e in m.log.since(f)][:32]
            return codes.ACCEPTED, m.log.seq, evs
        if what == "cfg":
            return codes.ACCEPTED, 0, {k: m.cfg[k] for k in CONFIG_KEYS if k in m.cfg}
        return codes.UNKNOWN, 0, None
