# Commands the head-end sends the meter over MQTT (docs/PROTOCOL.md §4-5):
# unsealing, parsing, validation, the replay counter and dispatch to the
# Meter. The transport (comms/link.py) hands each message here and publishes
# the ack it gets back; nothing here touches a socket.
import json

from micropython import const

import codes
import config
from comms import codec

TIME_MIN = 1577836800   # 2020-01-01
TIME_MAX = 4102444800   # 2100-01-01


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# Field kinds of a command body. A value of the wrong JSON type is FORMAT (a
# boolean is not an int, "0" is not 0); a value of the right type outside
# its range is RANGE.
_U32 = const(1)    # int, 0 .. 2^32-1
_BIT = const(2)    # int, 0 or 1
_INT = const(3)    # int; the op checks its range
_STR = const(4)
_OBJ = const(5)    # JSON object
_ANY = const(6)    # a setting's value: config checks it against the key

# op -> ((field, kind, required), ...), docs/PROTOCOL.md §4.4. Fields other
# than these and the envelope's are FORMAT: a misspelt "f" must not pass
# for an absent one.
OPS = {
    "topup": (("a", _U32, True), ("s", _U32, True), ("v", _INT, True)),
    "valve": (("o", _BIT, True), ("f", _BIT, False)),
    "valvetest": (("f", _BIT, False),),
    "cfg": (("k", _STR, True), ("v", _ANY, True)),
    "time": (("t", _INT, True),),
    "tariff": (("tar", _OBJ, True),),
    "emergency": (),
    "get": (("w", _STR, False), ("f", _U32, False)),
    "history": (("k", _STR, True), ("b", _U32, False), ("c", _U32, False)),
    "debt": (("v", _U32, True), ("s", _U32, True)),
    # the office-signed document (signed.py kinds "void", "floor"), as text
    "void": (("d", _STR, True),),
    "floor": (("d", _STR, True),),
}
_ENVELOPE = ("n", "op", "x", "e")
# The replay counter is (epoch << 32) | n: n runs 1 .. 2^32-1 within an
# epoch, and a command may move to the next epoch only (e = E or E + 1), so
# 2^32-1 never locks the channel and one signed command cannot burn the
# epochs either (docs/LINK.md §7).
_EPOCH_SHIFT = const(32)
HISTORY_PAGE = const(8)   # records per history ack: ~600 bytes, within the link's backlog


def _kind_ok(kind, v):
    if kind == _STR:
        return isinstance(v, str)
    if kind == _OBJ:
        return isinstance(v, dict)
    return kind == _ANY or _is_int(v)


def check_fields(op, d):
    """Result code of the fields of a command body d (a dict) for op:
    UNKNOWN op, FORMAT (a field missing, unexpected or of the wrong type;
    before any RANGE), RANGE, or ACCEPTED."""
    spec = OPS.get(op)
    if spec is None:
        return codes.UNKNOWN
    for k in d:
        if k not in _ENVELOPE and not any(k == f[0] for f in spec):
            return codes.FORMAT
    code = codes.ACCEPTED
    for name, kind, required in spec:
        if name not in d:
            if required:
                return codes.FORMAT
            continue
        v = d[name]
        if not _kind_ok(kind, v):
            return codes.FORMAT
        if kind == _U32 and not 0 <= v <= 0xFFFFFFFF or kind == _BIT and v not in (0, 1):
            code = codes.RANGE
    return code


def check_envelope(d):
    """Result code of a command body's envelope: n (1 .. 2^32-1), op (a
    string), x (optional expiry, 0 .. 2^32-1), e (optional counter epoch,
    0 .. 2^31-1: the counter (e << 32 | n) fits the ack's signed 64-bit val)."""
    if not isinstance(d, dict):
        return codes.FORMAT
    n, op, x, e = d.get("n"), d.get("op"), d.get("x", 0), d.get("e", 0)
    if not (_is_int(n) and isinstance(op, str) and _is_int(x) and _is_int(e)):
        return codes.FORMAT
    return (codes.ACCEPTED if 0 < n <= 0xFFFFFFFF and 0 <= x <= 0xFFFFFFFF
            and 0 <= e <= 0x7FFFFFFF else codes.RANGE)


def duplicate_keys(text):
    """True if a JSON object anywhere in text (valid JSON: json.loads took
    it) names a key twice. MicroPython's json has no object_pairs_hook and
    keeps the last value silently, so the text is scanned: a stack with,
    per open object, the keys seen so far (None for an array); a string
    right after "{" or after a "," inside an object is a key."""
    stack = []
    want_key = False
    i = 0
    end = len(text)
    while i < end:
        c = text[i]
        if c == 0x22:                         # '"': skip the string, escapes included
            j = i + 1
            while text[j] != 0x22:
                j += 2 if text[j] == 0x5C else 1
            if want_key:
                key = bytes(text[i + 1:j])
                if 0x5C in key:               # "\u0061" and "a" are the same key
                    key = json.loads(text[i:j + 1]).encode()
                if key in stack[-1]:
                    return True
                stack[-1].append(key)
                want_key = False
            i = j + 1
            continue
        if c == 0x7B:                         # {
            stack.append([])
            want_key = True
        elif c == 0x5B:                       # [
            stack.append(None)
        elif c == 0x7D or c == 0x5D:          # } ]
            stack.pop()
        elif c == 0x2C:                       # ,
            want_key = stack[-1] is not None
        i += 1
    return False


def parse_body(body):
    """(code, dict or None) of a signed message's JSON body: FORMAT if it is
    not JSON, not an object, or names a key twice."""
    try:
        d = json.loads(body)
    except ValueError:
        return codes.FORMAT, None
    if not isinstance(d, dict) or duplicate_keys(body):
        return codes.FORMAT, None
    return codes.ACCEPTED, d


_WHILE_LOST = ("floor", "get", "history")    # the only commands acted on after a total state loss


class Commands:
    """The meter's side of the command topics: handle(topic, msg) returns the
    ack payload to publish, or None."""

    def __init__(self, cfg, meter, clock, t_cmd, t_tariff, t_fleet=None, meter_key=None,
                 state_dir=None, outbox=None):
        self.cfg = cfg
        self.meter = meter
        self.clock = clock
        self.t_cmd = t_cmd
        self.t_tariff = t_tariff
        self.t_fleet = t_fleet
        self._meter_key = meter_key
        self.state_dir = state_dir
        self.outbox = outbox            # only read: its count goes into get state
        self.on_config = None           # fn(key, value) after a setting changed
        self.on_bad_signature = None    # fn() -> False: refuse this forgery silently
        self.rejected = 0

    @property
    def cmd_n(self):
        # the replay counter lives in the meter's CRC-checked state
        return self.meter.command_counter

    # ---------------- incoming ----------------
    def handle(self, topic, msg):
        if topic == self.t_cmd:
            r = self._command(msg)
            if r is None:
                return None
            n, code, val, detail = r
            return codec.ack(n, code, val, detail, msg)
        if topic == self.t_tariff:
            code, val = self._office(msg, b"tariff", "tariff")
            if code == codes.ACCEPTED:
                return codec.ack(0, code, val, None, msg)
        if topic == self.t_fleet:
            code, val = self._office(msg, b"fleet", "fleet")
            if code == codes.ACCEPTED:
                return codec.ack(0, code, val, None, msg)
        return None

    def _office(self, msg, purpose, kind):
        """A region tariff or fleet command: an office-signed document
        (signed.py, docs/PROTOCOL.md §4.7). (code, value for the ack)."""
        import signed
        m = self.meter
        code, body, sig = signed.split(msg)
        if code == codes.ACCEPTED:
            code = parse_body(body)[0]    # the same JSON rules as commands
        if code == codes.ACCEPTED:
            judge = signed.tariff_judge(m) if kind == "tariff" else signed.fleet_judge(m)
            code, d, rev = signed.admit(m.office, purpose, body, sig, kind, self.cfg["meter_id"],
                                        self.cfg["region"], self.clock.time(), judge)
        if code == codes.ACCEPTED:
            if kind == "tariff":
                code = signed.apply_tariff(m, d)
                return code, d["v"] if code == codes.ACCEPTED else 0
            code = signed.apply_fleet(m, d, rev)
            if code == codes.ACCEPTED:
                return code, d["n"]
        if code != codes.USED:
            m.log.add(codes.EV_TARIFF_REJECTED if kind == "tariff" else codes.EV_COMMAND_REJECTED,
                      code)
        return code, 0

    def _command(self, msg):
        """(n, code, val, detail) of one signed command, in the order of
        docs/PROTOCOL.md §4.4: envelope, counter, expiry, fields, action."""
        code, body = codec.unseal(self._meter_key, self.t_cmd, msg)
        if code == codes.SIGNATURE:
            # nothing of a forgery is trusted or echoed: not its counter (the
            # forger could match acks to guesses), not ours
            if self.on_bad_signature is not None and not self.on_bad_signature():
                return None       # over the window's allowance: counted, no ack, no event
            self._rejected(code)
            return 0, code, 0, None
        if code == codes.ACCEPTED:
            code, d = parse_body(body)
        if code == codes.ACCEPTED:
            code = check_envelope(d)
        if code != codes.ACCEPTED:
            return self._refuse(0, code)
        n = d["n"]
        e = d.get("e", 0)
        if (e << _EPOCH_SHIFT | n) <= self.cmd_n:
            return self._refuse(n, codes.OLD)
        if e > (self.cmd_n >> _EPOCH_SHIFT) + 1:
            return self._refuse(n, codes.RANGE)   # epochs advance one at a time
        x = d.get("x", 0)
        if x and self.clock.time() > x:
            return self._refuse(n, codes.OLD)
        # saved before acting: a replay after a crash is refused
        code = self.meter.accept_command(e << _EPOCH_SHIFT | n)
        if code != codes.ACCEPTED:
            return n, code, 0, None
        op = d["op"]
        code = check_fields(op, d)
        val, detail = 0, None
        if code == codes.ACCEPTED and self.meter.state_lost and op not in _WHILE_LOST:
            # the counter was lost with the state: an old signed command
            # could be replayed, so nothing acts until the floor (sent with
            # the head-end's newest counter, and bound to this loss by the
            # recovery nonce) has set the counter above every old one
            code = codes.REFUSED
        if code == codes.ACCEPTED:
            try:
                code, val, detail = self._dispatch(op, d)
            except (KeyError, TypeError, ValueError, AttributeError):
                # a nested value the checks above do not see into: refused,
                # and the link and the ack survive it
                code, val, detail = codes.FORMAT, 0, None
        if code not in (codes.ACCEPTED, codes.USED):
            self._rejected(code)
        return n, code, val, detail

    def _refuse(self, n, code):
        self._rejected(code)
        return n, code, self.cmd_n, None

    def _rejected(self, code):
        self.rejected += 1
        self.meter.log.add(codes.EV_COMMAND_REJECTED, code)

    def _dispatch(self, op, d):
        """(code, val, detail) of a command whose fields check_fields passed."""
        m = self.meter
        if op == "topup":
            code = m.apply_credit("mqtt", d["a"], d["s"], d["v"])
            return code, m.balance, None
        if op == "valve":
            code = m.request_valve(d["o"] == 1, "mqtt", d.get("f", 0) == 1)
            return code, 1 if m.want_open else 0, None
        if op == "valvetest":
            return m.valve_test("mqtt", d.get("f", 0) == 1), 0, None
        if op == "cfg":
            return self._configure(d["k"], d["v"]), 0, None
        if op == "time":
            t = d["t"]
            if not TIME_MIN <= t < TIME_MAX:
                return codes.RANGE, 0, None
            # the meter's own clock setting: a step back re-derives the
            # billing period's end, and the change is saved
            return m.set_time(t), t, None
        if op == "tariff":
            code = m.stage_tariff(d["tar"])
            # the version is echoed only once stage_tariff found it an int
            return code, d["tar"]["v"] if code in (codes.ACCEPTED, codes.USED) else 0, None
        if op == "emergency":
            return m.request_emergency(), m.balance, None
        if op == "void" or op == "floor":
            return self._recovery(op, d["d"])
        if op == "debt":
            return m.add_arrears(d["v"], d["s"]), m.debt, None
        if op == "history":
            return self._history(d["k"], d.get("b", 0), d.get("c", HISTORY_PAGE))
        return self._get(d.get("w", "state"), d)

    def _recovery(self, op, text):
        """void / floor: they settle credit keys, so they are office-signed
        documents (signed.py) carried inside the sealed command; the meter's
        own key (a flash dump has it) can make neither (docs/PROTOCOL.md §4.4)."""
        import signed
        m = self.meter
        code, body, sig = signed.split(text.encode())
        if code == codes.ACCEPTED:
            code = parse_body(body)[0]
        if code == codes.ACCEPTED:
            code, doc, _ = signed.admit(m.office, op.encode(), body, sig, op, self.cfg["meter_id"],
                                        self.cfg["region"], self.clock.time(),
                                        signed.recovery_judge(m, op))
        if code != codes.ACCEPTED:
            return code, 0, None
        if op == "floor":
            return m.restore_floors(doc["a"], doc["c"], doc["q"], doc["i"], doc["rn"]), 0, None
        # the office's refund verdict: ACCEPTED = was not applied, never will be
        src = "card" if doc.get("c", 0) == 1 else "mqtt"
        return m.void_credit(src, doc["a"], doc["s"]), m.ledger.floor(src, doc["a"]), None

    def _history(self, kind, before, count):
        # docs/PROTOCOL.md §4.6: one page of frozen records, newest first
        h = self.meter.history
        if kind == "a":
            return codes.ACCEPTED, h.latched, {"h": h.hours(), "s": h.secs, "l": h.latched,
                                               "on": h.active, "d": h.today(), "m": h.month()}
        if kind not in ("d", "m"):
            return codes.UNKNOWN, 0, None
        if not 1 <= count <= HISTORY_PAGE:
            return codes.RANGE, 0, None
        return codes.ACCEPTED, h.newest(kind), [list(r) for r in h.records(kind, before, count)]

    def _configure(self, key, value):
        code = self.meter.configure(key, value, "mqtt")[0]
        if code == codes.ACCEPTED and self.on_config is not None:
            self.on_config(key, value)
        return code

    def _get(self, what, d):
        m = self.meter
        if what == "state":
            s = m.snapshot()
            s["ob"] = self.outbox.count if self.outbox is not None else 0
            s["oq"] = self.outbox.next_seq - 1 if self.outbox is not None else 0
            s["tc"] = m.charged
            s["n"] = self.cmd_n
            return codes.ACCEPTED, m.balance, s
        if what == "log":
            evs = []
            for e in m.log.since(d.get("f", 0)):
                if len(evs) == 32:
                    break
                evs.append(list(e))
            return codes.ACCEPTED, m.log.seq, evs
        if what == "cfg":
            return codes.ACCEPTED, 0, {k: m.cfg[k] for k in config.REMOTE if k in m.cfg}
        return codes.UNKNOWN, 0, None
