# Office-signed documents: what the office tells more than one meter (region
# tariffs, fleet commands, tariff / check / valve-test cards). The contract
# is docs/PROTOCOL.md §4.7; the signature is authority.py's.
#
# A document is compact JSON, signed whole; its fields:
#   "k"  kind: "tariff", "fleet", "check", "valve", "void", "floor"
#   "r"  region, or "m" [meter ids]: who it is for (exactly one of them)
#   "x"  expiry, unix s (required for fleet commands and cards)
#   "n"  sequence (fleet commands, cards): see Meter.office_fresh
# Checks run cheapest first and the signature (seconds on an ESP32,
# bench/bench_sig.py) last, so a replayed or stale document costs nothing.
import json

import authority
import codes

MAX_DOC = const(600)       # bytes of JSON; a card holds at most this much
MAX_METERS = const(32)     # ids in "m"
MAX_CARD_S = const(2_678_400)   # a card is valid for at most 31 days from now
SIG_HEX = const(128)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def split(msg):
    """b"<json>|<128 hex r||s>" -> (code, body, sig)."""
    if len(msg) < SIG_HEX + 3 or len(msg) > MAX_DOC + SIG_HEX + 1 or msg[-SIG_HEX - 1] != 0x7C:
        return codes.FORMAT, None, None
    import binascii
    try:
        sig = binascii.unhexlify(msg[-SIG_HEX:])
    except ValueError:
        return codes.FORMAT, None, None
    return codes.ACCEPTED, bytes(msg[:-SIG_HEX - 1]), sig


def parse(body, kind):
    """(code, dict): FORMAT unless body is a JSON object of this kind with
    a well-formed scope, expiry and sequence."""
    if len(body) > MAX_DOC:
        return codes.FORMAT, None
    try:
        d = json.loads(body)
    except ValueError:
        return codes.FORMAT, None
    if not isinstance(d, dict) or d.get("k") != kind:
        return codes.FORMAT, None
    if ("r" in d) == ("m" in d):
        return codes.FORMAT, None
    if "r" in d and not _is_int(d["r"]):
        return codes.FORMAT, None
    if "m" in d:
        m = d["m"]
        if not isinstance(m, list) or not 1 <= len(m) <= MAX_METERS \
                or not all(isinstance(i, str) for i in m):
            return codes.FORMAT, None
    for f in ("x", "n"):
        if f in d and not (_is_int(d[f]) and 0 <= d[f] < (1 << 32)):
            return codes.FORMAT, None
    return codes.ACCEPTED, d


def scope(d, meter_id, region):
    if "m" in d:
        return codes.ACCEPTED if meter_id in d["m"] else codes.WRONG_METER
    return codes.ACCEPTED if d["r"] == region else codes.WRONG_REGION


def admit(keys, purpose, body, sig, kind, meter_id, region, now, judge=None):
    """(code, doc, rev) of one signed document: FORMAT, WRONG_METER /
    WRONG_REGION, OLD (expired), judge(doc)'s verdict if not ACCEPTED,
    SIGNATURE (no active office key signed it), else ACCEPTED with rev the
    revision of the office key that signed it."""
    code, d = parse(body, kind)
    if code == codes.ACCEPTED:
        code = scope(d, meter_id, region)
    if code == codes.ACCEPTED and "x" in d and now > d["x"]:
        code = codes.OLD
    if code == codes.ACCEPTED and judge is not None:
        code = judge(d)
    rev = 0
    if code == codes.ACCEPTED:
        rev = authority.signer(keys, purpose, body, sig)
        if not rev:
            code = codes.SIGNATURE
    return code, d, rev


# ---------------- what a document does ----------------

def tariff_judge(meter):
    """The cheap verdict on a signed tariff (version rules, Meter)."""
    from metering import tariff as tariffs

    def judge(d):
        code, t = tariffs.parse(_tariff_part(d), received=True)
        return code if t is None else meter.tariff_verdict(t, True)
    return judge


def _tariff_part(d):
    t = {"v": d.get("v"), "at": d.get("at"), "b": d.get("b"), "sc": d.get("sc"),
         "e": d.get("e", 0)}
    for k in ("fb", "fd", "mc", "dr"):    # social fields (metering/tariff.py), when present
        if k in d:
            t[k] = d[k]
    return t


def apply_tariff(meter, d):
    return meter.stage_tariff(_tariff_part(d), office=True)


def card_judge(meter, now):
    """Cards must expire within MAX_CARD_S and carry a fresh sequence."""
    def judge(d):
        if "x" not in d or "n" not in d:
            return codes.FORMAT
        if d["x"] - now > MAX_CARD_S:
            return codes.RANGE
        return codes.ACCEPTED if meter.office_fresh("c", d["n"], True) else codes.OLD
    return judge


def fleet_judge(meter):
    def judge(d):
        if "x" not in d or "n" not in d or not isinstance(d.get("op"), str):
            return codes.FORMAT
        if d["op"] not in FLEET_OPS:
            return codes.UNKNOWN
        if d["op"] == "cell" and "m" not in d:
            return codes.RANGE   # a new cell is fitted in one meter, never in a region
        return codes.ACCEPTED if meter.office_fresh("f", d["n"], False) else codes.OLD
    return judge


def apply_fleet(meter, d, signer):
    """A verified fleet command (signed by key revision signer): its
    sequence is made durable first, so a replay after a power cut is OLD."""
    op = d["op"]
    rev = d.get("rev")
    if op == "retire" and not (_is_int(rev) and 1 <= rev <= signer):
        return codes.RANGE   # a key can retire older keys, never its successors
    if op == "cell" and meter.cell is None:
        return codes.REFUSED  # a mains board counts no cell
    code = meter.office_note("f", d["n"])
    if code != codes.ACCEPTED:
        return code
    if op == "valvetest":
        return meter.valve_test("fleet", d.get("f", 0) == 1)
    if op == "cell":
        return meter.cell_fitted()
    # "retire": office key revisions below rev are refused from now on
    return meter.retire_office_keys(rev)


FLEET_OPS = ("valvetest", "retire", "cell")


# ---------------- credit recovery: void and floor (docs/CARD.md §5.2-5.3) ----------------
# fields (u32) of each kind; a void's "c" (0 mqtt, 1 card) is optional
_RECOVERY = {"void": ("a", "s"), "floor": ("a", "c", "q", "i", "rn")}


def recovery_judge(meter, kind):
    """A void or floor names one meter ("m"), expires ("x"), and has its
    fields; a floor must carry the recovery nonce of the loss now pending
    (OLD otherwise, USED with no loss pending), all before the verify."""
    def judge(d):
        if "m" not in d or "x" not in d:
            return codes.FORMAT
        if kind == "void" and not (_is_int(d.get("c", 0)) and d.get("c", 0) in (0, 1)):
            return codes.FORMAT
        for f in _RECOVERY[kind]:
            if not (_is_int(d.get(f)) and 0 <= d[f] < (1 << 32)):
                return codes.FORMAT
        if kind == "floor":
            if not meter.state_lost:
                return codes.USED
            if d["rn"] != meter.recovery_nonce:
                return codes.OLD
        return codes.ACCEPTED
    return judge
