# Wire formats of the meter's MQTT protocol (docs/PROTOCOL.md).
#
# Shared, unchanged, by the firmware (MicroPython) and tools/headend.py
# (CPython): only json, struct and comms.sign, no const(), no port modules.
#
# Uplink data is binary and big-endian: a batch is one version byte followed
# by whole records, each starting with its kind byte and its outbox sequence.
# Every uplink publish (batch or ack) ends with a 16-byte tag: HMAC-SHA256
# of topic + "\n" + body under the meter's uplink key (sign.uplink_key), so
# the head-end takes from m/<id>/t, e, a only what that meter's key signed.
# Downlink (commands, tariffs) is compact JSON followed by "|" and the hex
# HMAC-SHA256 of topic + "\n" + JSON under the meter's or the region's key.
import json
import struct
from hashlib import sha256

from comms.sign import hmac_sha256, equal

VERSION = 2           # 2: uplink publishes carry the tag (1 had none)
UP_TAG = 16           # bytes of the uplink tag

# record kinds
TELE = 1
EVENT = 2
SUMMARY = 3
BATT = 4      # battery boards only (docs/PROTOCOL.md §3.3)

# kind, seq, t, ml, balance, flow mL/h, flags, tariff version, event seq, rssi
FMT_TELE = ">BIIQqIHIIb"
# kind, seq, event seq, t, code, arg
FMT_EVENT = ">BIIIHq"
# kind, seq (first covered), last seq covered, telemetry count, t first,
# t last, ml first, ml last, balance last, events dropped
FMT_SUMMARY = ">BIIIIIQQqH"
# kind, seq, t, cell mV, charge left %, days left at the mean rate so far
FMT_BATT = ">BIIHBH"
# version, command counter, result code, value, first 8 bytes of the SHA-256
# of the command message answered (as received, seal included)
FMT_ACK = ">BIBq8s"

SIZES = {TELE: struct.calcsize(FMT_TELE), EVENT: struct.calcsize(FMT_EVENT),
         SUMMARY: struct.calcsize(FMT_SUMMARY), BATT: struct.calcsize(FMT_BATT)}
FORMATS = {TELE: FMT_TELE, EVENT: FMT_EVENT, SUMMARY: FMT_SUMMARY, BATT: FMT_BATT}
ACK_SIZE = struct.calcsize(FMT_ACK)

MAX_DOWNLINK = 1024   # bytes; longer commands/tariffs are refused (FORMAT)
MAC_HEX = 64

# telemetry flag bits (docs/PROTOCOL.md §3.3)
F_VALVE_OPEN = 0x01   # valve intent: open
# bits 1-4: why closed, every reason of codes.WHY_* (0 none ... 9 override)
# bits 5-6: credit level (0 fine, 1 below low1, 2 below low2, 3 exhausted)
F_CONFIRM = 0x80      # credit back, waiting for the user to confirm reopening
F_STAGED = 0x100      # a tariff is staged for later activation
F_EMERGENCY = 0x200   # emergency credit is owed
F_OUTBOX_LOSS = 0x400  # the outbox has summarised records since boot


def topics(meter_id, region):
    m = "m/" + meter_id + "/"
    return {"t": m + "t", "e": m + "e", "s": m + "s", "c": m + "c", "a": m + "a",
            "o": m + "o", "or": m + "or",
            "tariff": "r/%d/tariff" % region, "fleet": "r/%d/fleet" % region}


def ota_topic(region, board):
    # the retained manifest of one board in a region (docs/PROTOCOL.md §2);
    # images before it listened on r/<r>/ota, which the head-end still
    # feeds for them (docs/OTA.md §4)
    return "r/%d/ota/%s" % (region, board)


def flags(valve_open, why, low, confirm=False, staged=False, emergency=False, loss=False,
          state=0):
    # state: meter.state_flags() (clock, state copies, flash), bits 11-14
    f = (F_VALVE_OPEN if valve_open else 0) | (why & 15) << 1 | (low & 3) << 5 | (state & 15) << 11
    if confirm:
        f |= F_CONFIRM
    if staged:
        f |= F_STAGED
    if emergency:
        f |= F_EMERGENCY
    if loss:
        f |= F_OUTBOX_LOSS
    return f


def tele(t, ml, bal, flow, fl, tv, evs, rssi):
    if rssi is None or rssi < -128 or rssi > 127:
        rssi = -128
    return bytearray(struct.pack(FMT_TELE, TELE, 0, t, ml, bal, flow, fl, tv, evs, rssi))


def batt(t, mv, pct, days):
    mv = 0 if mv is None or mv < 0 else 65535 if mv > 65535 else mv
    return bytearray(struct.pack(FMT_BATT, BATT, 0, t, mv, min(max(pct, 0), 100),
                                 min(max(days, 0), 65535)))


def event(evseq, t, code, arg):
    return bytearray(struct.pack(FMT_EVENT, EVENT, 0, evseq, t, code, arg))


def summary(first, last, n, t0, t1, ml0, ml1, bal1, dropped):
    return bytearray(struct.pack(FMT_SUMMARY, SUMMARY, first, last, n, t0, t1, ml0, ml1,
                                 bal1, min(dropped, 0xFFFF)))


def set_seq(rec, seq):
    struct.pack_into(">I", rec, 1, seq)


def seq_of(rec):
    return struct.unpack_from(">I", rec, 1)[0]


def channel(kind):
    """Which topic a record kind goes out on: "t" or "e"."""
    return "e" if kind == EVENT else "t"


def batch(records):
    """The body of a batch (seal_up adds the tag)."""
    out = bytearray(b"\x02")
    for r in records:
        out.extend(r)
    return bytes(out)


def up_tag(key, topic, body):
    t = topic.encode() if isinstance(topic, str) else topic
    return hmac_sha256(key or b"", t + b"\n" + body)[:UP_TAG]


def seal_up(key, topic, body):
    """An uplink payload: body + its tag under the meter's uplink key."""
    return bytes(body) + up_tag(key, topic, body)


def verify_up(key, topic, payload):
    """True if payload's tag is the uplink key's over topic and body."""
    if len(payload) <= UP_TAG:
        return False
    return equal(up_tag(key, topic, bytes(payload[:-UP_TAG])), bytes(payload[-UP_TAG:]))


_FIELDS = {
    TELE: ("kind", "seq", "t", "ml", "bal", "flow", "flags", "tv", "evs", "rssi"),
    EVENT: ("kind", "seq", "evs", "t", "code", "arg"),
    SUMMARY: ("kind", "seq", "last", "n", "t0", "t1", "ml0", "ml1", "bal", "dropped"),
    BATT: ("kind", "seq", "t", "mv", "pct", "days"),
}


def decode_record(buf, off=0):
    """(dict, size) of the record at buf[off:]; ValueError if malformed."""
    if off >= len(buf):
        raise ValueError("no record")
    kind = buf[off]
    fmt = FORMATS.get(kind)
    if fmt is None or off + SIZES[kind] > len(buf):
        raise ValueError("bad record kind %d or length" % kind)
    vals = struct.unpack_from(fmt, buf, off)
    d = {}
    for k, v in zip(_FIELDS[kind], vals):
        d[k] = v
    if kind == TELE:
        f = d["flags"]
        d["valve"] = f & 1
        d["why"] = (f >> 1) & 15
        d["low"] = (f >> 5) & 3
        d["sf"] = (f >> 11) & 15
        if d["rssi"] == -128:
            d["rssi"] = None
    return d, SIZES[kind]


def unbatch(payload, tagged=True):
    """Records of an uplink batch, as dicts; ValueError if malformed. The
    tag is not checked here (verify_up)."""
    if not payload or payload[0] != VERSION:
        raise ValueError("unknown batch version")
    if tagged:
        if len(payload) <= UP_TAG:
            raise ValueError("no tag")
        payload = payload[:-UP_TAG]
    out = []
    off = 1
    while off < len(payload):
        d, n = decode_record(payload, off)
        out.append(d)
        off += n
    return out


# ---------------- acks ----------------
def command_hash(msg):
    """What an ack carries of the command it answers."""
    return sha256(bytes(msg)).digest()[:8]


def ack(n, code, val=0, detail=None, cmd=b""):
    """The body of an ack (seal_up adds the tag); cmd: the message answered."""
    b = struct.pack(FMT_ACK, VERSION, n & 0xFFFFFFFF, code, val, command_hash(cmd))
    if detail is not None:
        b += json.dumps(detail).encode()
    return b


def parse_ack(payload, tagged=True):
    if tagged:
        payload = payload[:-UP_TAG] if len(payload) > UP_TAG else b""
    if len(payload) < ACK_SIZE or payload[0] != VERSION:
        raise ValueError("bad ack")
    _, n, code, val, h = struct.unpack_from(FMT_ACK, payload, 0)
    detail = json.loads(payload[ACK_SIZE:]) if len(payload) > ACK_SIZE else None
    return {"n": n, "code": code, "val": val, "detail": detail, "h": bytes(h)}


# ---------------- signed downlink ----------------
def _hex(b):
    return "".join("%02x" % x for x in b).encode()


def mac(key, topic, body):
    t = topic.encode() if isinstance(topic, str) else topic
    return _hex(hmac_sha256(key, t + b"\n" + body))


def seal(key, topic, body):
    """body (bytes) -> signed payload."""
    return body + b"|" + mac(key, topic, body)


def unseal(key, topic, payload):
    """(result code, body bytes or None). Codes as in codes.py: 0 accepted,
    2 format, 5 signature."""
    if len(payload) > MAX_DOWNLINK or len(payload) < MAC_HEX + 3:
        return 2, None
    body = payload[:-MAC_HEX - 1]
    if payload[-MAC_HEX - 1] != 0x7C:  # "|"
        return 2, None
    if key is None:
        return 5, None
    if not equal(mac(key, topic, body), bytes(payload[-MAC_HEX:])):
        return 5, None
    return 0, body


def command(n, op, **args):
    """Command body (CPython side): compact JSON with counter n and op."""
    d = {"n": n, "op": op}
    d.update(args)
    return json.dumps(d, separators=(",", ":")).encode()


def describe(topic, payload):
    """One human-readable line of a message, for logs and the simulator."""
    if not isinstance(topic, str):
        topic = bytes(topic).decode()
    try:
        if topic.endswith("/t") or topic.endswith("/e"):
            parts = []
            for r in unbatch(payload):
                if r["kind"] == TELE:
                    parts.append("T#%d ml=%d bal=%d flow=%d v=%d tv=%d" % (
                        r["seq"], r["ml"], r["bal"], r["flow"], r["valve"], r["tv"]))
                elif r["kind"] == EVENT:
                    parts.append("E#%d ev=%d code=%d arg=%d" % (r["seq"], r["evs"], r["code"], r["arg"]))
                else:
                    parts.append("S#%d-%d n=%d ml=%d" % (r["seq"], r["last"], r["n"], r["ml1"]))
            return " ".join(parts)
        if topic.endswith("/a"):
            a = parse_ack(payload)
            return "ack n=%d code=%d val=%d%s" % (a["n"], a["code"], a["val"],
                                                  "" if a["detail"] is None else " +detail")
        return bytes(payload[:120]).decode()
    except (ValueError, UnicodeError, KeyError, IndexError):
        return "%d bytes" % len(payload)
