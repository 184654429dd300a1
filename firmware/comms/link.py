# MQTT link of the meter, on micropython-lib's umqtt.simple (docs/PROTOCOL.md).
#
# umqtt.simple blocks, so this link keeps every call short and bounded:
#   - the client runs on comms.net.Transport: connect, TLS and every read and
#     write have a deadline, so no call waits longer than timeout_ms;
#   - incoming messages are only queued by the umqtt callback and handled
#     afterwards, so an ack published from a handler can never nest inside
#     umqtt's wait for another PUBACK;
#   - keepalive pings run on real time (time.ticks_ms), not on the meter's
#     clock, which the simulator may run fast; a broker silent for a whole
#     keepalive means a dead link;
#   - any error drops the connection; reconnects back off exponentially with
#     jitter, and every connect subscribes again;
#   - telemetry and events go into the flash outbox first and leave in order,
#     a few records per QoS 1 publish, whenever the link is up.
# Metering never waits on it: the meter task runs whatever state this link is
# in, and each step() does a bounded amount of work.
import json
import os
import time

import codes
import config
from comms import codec
from comms.outbox import Outbox

BACKOFF_MIN_MS = 1000
MAX_INBOX = 8          # messages queued per step; more wait in the socket
MAX_IN_PER_STEP = 8
BATCHES_PER_STEP = 16   # at most, and for at most DRAIN_MS of real time
DRAIN_MS = 100
BATCH_RECORDS = 16

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


from keystore import load as load_secrets  # noqa: E402


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2)) if s else None


def _echo_n(msg):
    """The counter of a command whose signature failed, only to let the
    sender match the ack; nothing else of it is trusted."""
    try:
        n = json.loads(msg[:-65])["n"]
        return n if _is_int(n) and 0 < n <= 0xFFFFFFFF else 0
    except (ValueError, TypeError, KeyError, IndexError):
        return 0


class MqttLink:
    def __init__(self, cfg, meter, net, clock, client_factory, region_key=None, meter_key=None,
                 user=None, password=None, state_dir=None, transport=None, rt=None,
                 outbox=None):
        self.cfg = cfg
        self.meter = meter
        self.net = net
        self.clock = clock               # the meter's clock: timestamps, report interval
        self.rt = rt or time             # real time: keepalive, backoff, deadlines
        self._factory = client_factory
        self._region_key = region_key
        self._meter_key = meter_key
        self.user = user
        self.password = password
        self.transport = transport
        self.state_dir = state_dir
        mid = cfg["meter_id"]
        self.client_id = mid
        tp = codec.topics(mid, cfg["region"])
        self.t_tele = tp["t"].encode()
        self.t_events = tp["e"].encode()
        self.t_status = tp["s"].encode()
        self.t_cmd = tp["c"].encode()
        self.t_ack = tp["a"].encode()
        self.t_tariff = tp["tariff"].encode()
        self.client = None
        self.connected = False
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = self.rt.ticks_ms()
        self._next_report = 0
        self._last_ping = 0
        self._inbox = []
        self._replies = []        # acks waiting for a connection
        self.cmd_n = self._load_n()
        # counters, for the simulator display, the bench and the REPL
        self.sent = 0
        self.received = 0
        self.connects = 0
        self.failures = 0
        self.rejected = 0
        self.last_error = None
        self.on_traffic = None   # fn(direction, topic, text bytes) for the simulator display
        if outbox is None:
            outbox = Outbox(state_dir or ".", on_overflow=self._overflow)
        else:
            outbox.on_overflow = self._overflow
        self.outbox = outbox
        log = meter.log
        if log.seq < outbox.ev_seen:
            outbox.ev_seen = 0   # a new event log (state wiped): take it from the start
        for ev in log.since(outbox.ev_seen):
            self._on_event(ev)
        log.listeners.append(self._on_event)

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

    # ---------------- outbox feeding (runs inside the meter task) ----------------
    def _on_event(self, ev):
        try:
            if ev[0] > self.outbox.ev_seen:
                self.outbox.append(codec.event(ev[0], ev[1], ev[2], ev[3]))
        except Exception:  # noqa: BLE001 - a full or failing flash must not stop metering
            pass

    def _overflow(self, n):
        self.meter.log.add(codes.EV_OUTBOX_OVERFLOW, n)

    def telemetry(self):
        """Append one telemetry record to the outbox (sent when the link is up)."""
        m = self.meter
        s = m.snapshot()
        rssi = None
        try:
            rssi = self.net.rssi() if self.net is not None else None
        except Exception:  # noqa: BLE001
            pass
        fl = codec.flags(s["valve"], s["why"], s["low"], getattr(m, "awaiting_confirm", False),
                         getattr(m, "staged", None) is not None,
                         getattr(m, "emergency_owed", 0) > 0, self.outbox.summarised > 0)
        rec = codec.tele(s["t"], s["ml"], s["bal"], s["flow"], fl, s["tv"], s["evs"], rssi)
        try:
            return self.outbox.append(rec)
        except OSError:
            return 0

    def _report_due(self):
        t = self.clock.time()
        if self._next_report - t > self.cfg["report_s"]:
            self._next_report = t   # the clock was set back: report now, not in a day
        if t >= self._next_report:
            self._next_report = t + self.cfg["report_s"]
            self.telemetry()

    # ---------------- connection ----------------
    def _connect(self, now):
        if self.net is not None and not self.net.connect():
            raise OSError(-2)  # no network yet
        m = self.cfg["mqtt"]
        c = self._factory(self.client_id, m["host"], m["port"], m.get("keepalive", 60),
                          self.user, self.password)
        self.client = c
        c.set_callback(self._on_message)
        c.set_last_will(self.t_status, b"0", retain=True, qos=1)
        # A persistent session: commands published while the meter was
        # offline are queued by the broker and delivered now.
        c.connect(False)
        c.subscribe(self.t_cmd, 1)
        c.subscribe(self.t_tariff, 1)
        self.connected = True
        self._publish(self.t_status, b"1", retain=True)
        self.backoff_ms = BACKOFF_MIN_MS
        self.connects += 1
        self._last_ping = now

    def _close(self):
        c = self.client
        self.client = None
        self.connected = False
        if c is not None and c.sock is not None:
            try:
                c.sock.close()
            except Exception:  # noqa: BLE001
                pass

    def _fail(self, e):
        self._close()
        self.failures += 1
        self.last_error = repr(e)
        b = self.backoff_ms
        jitter = int.from_bytes(os.urandom(2), "big") % (b // 2 + 1)
        self._next_try = self.rt.ticks_add(self.rt.ticks_ms(), b // 2 + jitter)
        mx = self.cfg["mqtt"].get("backoff_max_s", 300) * 1000
        self.backoff_ms = min(b * 2, mx)

    def disconnect(self):
        """Clean shutdown (the Last Will is not sent: status goes to "0" here)."""
        if self.client is not None:
            try:
                self._publish(self.t_status, b"0", retain=True)
                self.client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._close()

    def _publish(self, topic, payload, retain=False, qos=1):
        self.client.publish(topic, payload, retain, qos)
        self.sent += 1
        self._show("out", topic, payload)

    def _show(self, direction, topic, payload):
        if self.on_traffic:
            try:
                self.on_traffic(direction, topic, codec.describe(topic, payload).encode())
            except Exception:  # noqa: BLE001 - a display must not break the link
                pass

    def _on_message(self, topic, msg):
        # Called by umqtt from inside check_msg/publish/subscribe: only queue.
        # umqtt sends the PUBACK after this returns, so a message that finds
        # no room must raise here: unacknowledged, the broker keeps it and
        # delivers it again after the reconnect (a dropped one would be a
        # top-up acknowledged to the broker and never applied).
        self.received += 1
        if len(self._inbox) >= MAX_INBOX:
            self.rejected += 1
            raise OSError(105)    # ENOBUFS
        self._inbox.append((bytes(topic), bytes(msg)))

    def _process_inbox(self):
        while self._inbox:
            topic, msg = self._inbox.pop(0)
            self._show("in", topic, msg)
            self._handle(topic, msg)

    def _reply(self, payload):
        # acks of commands handled while the link is down wait for the next
        # connection (bounded: the head-end re-sends, and a re-sent top-up
        # answers USED)
        if self.client is None:
            if len(self._replies) < MAX_INBOX:
                self._replies.append(payload)
            return
        self._publish(self.t_ack, payload)

    # ---------------- the step ----------------
    def step(self):
        """One short, bounded turn of the link; called from the comms task."""
        rt = self.rt
        now = rt.ticks_ms()
        self._report_due()
        if self.client is None:
            # commands that were received (and acknowledged to the broker)
            # before the link dropped are carried out now, not lost
            if self._inbox:
                try:
                    self._process_inbox()
                except Exception as e:  # noqa: BLE001
                    self.last_error = repr(e)
            if rt.ticks_diff(now, self._next_try) < 0:
                return
            try:
                self._connect(now)
            except Exception as e:  # noqa: BLE001 - OSError, MQTTException, AssertionError ...
                self._fail(e)
                return
        try:
            tr = self.transport
            for _ in range(MAX_IN_PER_STEP):
                before = tr.rx if tr is not None else 0
                self.client.check_msg()
                if tr is None or tr.rx == before:
                    break
            while self._replies:
                self._publish(self.t_ack, self._replies[0])
                self._replies.pop(0)
            self._process_inbox()
            t0 = rt.ticks_ms()
            for _ in range(BATCHES_PER_STEP):
                if not self._drain_one() or rt.ticks_diff(rt.ticks_ms(), t0) > DRAIN_MS:
                    break
            ka = self.cfg["mqtt"].get("keepalive", 60) * 1000
            if ka:
                if tr is not None and rt.ticks_diff(now, tr.last_rx) > ka + tr.timeout_ms:
                    raise OSError(codes.TIMEOUT)  # broker silent for a whole keepalive
                if rt.ticks_diff(now, self._last_ping) >= ka // 2:
                    self.client.ping()
                    self._last_ping = now
            if tr is not None:
                tr.flush()
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _drain_one(self):
        recs = self.outbox.peek(BATCH_RECORDS)
        if not recs:
            return False
        topic = self.t_events if codec.channel(recs[0][0]) == "e" else self.t_tele
        self._publish(topic, codec.batch(recs))   # QoS 1: returns after PUBACK
        self.outbox.ack(recs)
        return True

    # ---------------- incoming ----------------
    def _handle(self, topic, msg):
        if topic == self.t_cmd:
            n, code, val, detail = self._command(msg)
            self._reply(codec.ack(n, code, val, detail))
        elif topic == self.t_tariff:
            code, val = self._region_tariff(msg)
            if code == codes.ACCEPTED:
                self._reply(codec.ack(0, code, val))

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
        if key == "report_s":
            self._next_report = min(self._next_report, self.clock.time() + value)
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
            s["ob"] = self.outbox.count
            s["n"] = self.cmd_n
            return codes.ACCEPTED, m.balance, s
        if what == "log":
            f = d.get("f", 0)
            evs = [list(e) for e in m.log.since(f)][:32]
            return codes.ACCEPTED, m.log.seq, evs
        if what == "cfg":
            return codes.ACCEPTED, 0, {k: m.cfg[k] for k in CONFIG_KEYS if k in m.cfg}
        return codes.UNKNOWN, 0, None


def pem_to_der(pem):
    """The first certificate of a PEM text as DER (mbedTLS in MicroPython
    takes DER for cadata)."""
    if not pem:
        return None
    from binascii import a2b_base64
    lines = pem.strip().split("\n")
    body = []
    inside = False
    for ln in lines:
        ln = ln.strip()
        if ln.startswith("-----BEGIN"):
            inside = True
        elif ln.startswith("-----END"):
            break
        elif inside:
            body.append(ln)
    return a2b_base64("".join(body))


def _no_tls(sock, host, cadata):
    raise OSError(-3)  # TLS configured but this board's network has no TLS


def build_link(meter, hw, region_key=None):
    """The link for a meter on a board: keys, credentials and the broker's CA
    from <state_dir>/secrets.json (written at provisioning)."""
    from comms.net import Transport, umqtt_factory
    cfg = meter.cfg
    sec = load_secrets(hw.state_dir)
    m = cfg["mqtt"]
    tls = None
    cadata = None
    if m.get("tls"):
        tls = getattr(hw.net, "wrap_tls", None) or _no_tls
        cadata = pem_to_der(sec.get("ca"))
    tr = Transport(m.get("tls_host", m["host"]), m.get("timeout_ms", 5000), tls, cadata)
    if region_key is None:
        region_key = _unhex(sec.get("rk"))
    return MqttLink(cfg, meter, hw.net, hw.clock, umqtt_factory(tr), region_key,
                    _unhex(sec.get("mk")), sec.get("user"), sec.get("pw"), hw.state_dir, tr)
