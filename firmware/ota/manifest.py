# The office-signed manifest of a firmware image (docs/OTA.md §1).
#
# Wire form: b"<json>|<128 hex r||s>", signed whole with purpose b"ota"
# (authority.py). Fields:
#   "k"   "ota"
#   "v"   image version, int > the meter's forward-only floor
#   "b"   board module name ("esp32_devkitc", ...)
#   "sz"  image size in bytes
#   "h"   SHA-256 of the whole image, hex
#   "cs"  chunk size, a multiple of 4096
#   "ch"  [hex SHA-256 of each chunk], ceil(sz / cs) of them
#   "bat" minimum battery, mV (0: none)
#   "g"   rollout group: 1 (1 % of the fleet), 2 (10 %), 3 (all)
#   "rb"  optional, 1: an emergency rollback (old code under a new version)
# Checks run cheapest first; the signature (seconds on an ESP32) is last,
# checked by the Updater in slices.
import json

import codes

MAX_MANIFEST = const(3000)     # bytes of JSON: 26 chunk digests of a 1.6 MB image fit
BLOCK = const(4096)
GROUP_PERCENT = (0, 1, 10, 100)


def _int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _hex32(s):
    if not isinstance(s, str) or len(s) != 64:
        return False
    try:
        int(s, 16)
    except ValueError:
        return False
    return True


def split(msg):
    """b"<json>|<128 hex>" -> (code, body, sig)."""
    if not 131 <= len(msg) <= MAX_MANIFEST + 129 or msg[-129] != 0x7C:
        return codes.FORMAT, None, None
    import binascii
    try:
        sig = binascii.unhexlify(msg[-128:])
    except ValueError:
        return codes.FORMAT, None, None
    return codes.ACCEPTED, bytes(msg[:-129]), sig


def parse(body):
    """(code, dict): FORMAT unless body is a well-formed manifest."""
    if len(body) > MAX_MANIFEST:
        return codes.FORMAT, None
    try:
        d = json.loads(body)
    except ValueError:
        return codes.FORMAT, None
    if not isinstance(d, dict) or d.get("k") != "ota":
        return codes.FORMAT, None
    if not (_int(d.get("v"), 1, 0xFFFFFFFF) and isinstance(d.get("b"), str)
            and _int(d.get("sz"), 1, 0x1000000) and _hex32(d.get("h"))
            and _int(d.get("cs"), BLOCK, 0x100000) and d["cs"] % BLOCK == 0
            and _int(d.get("bat", 0), 0, 10_000) and _int(d.get("g"), 1, 3)
            and _int(d.get("rb", 0), 0, 1)):
        return codes.FORMAT, None
    ch = d.get("ch")
    if not isinstance(ch, list) or len(ch) != (d["sz"] + d["cs"] - 1) // d["cs"] \
            or not all(_hex32(c) for c in ch):
        return codes.FORMAT, None
    return codes.ACCEPTED, d


def bucket(meter_id):
    """The meter's place in the fleet, 0..99: the first byte pair of
    SHA-256(meter id) mod 100, the same on the head-end (tools/headend.py)."""
    import hashlib
    h = hashlib.sha256(meter_id.encode()).digest()
    return (h[0] << 8 | h[1]) % 100


def admit(msg, board, floor, slot_size, meter_id, battery_mv, min_mv, refused=0):
    """(code, dict, body, sig) of a manifest offered to this meter, every
    check but the signature: FORMAT, WRONG_BOARD, OLD (not above the version
    floor, or the version that failed here last, `refused`), RANGE (larger
    than the slot), REFUSED (not this meter's rollout group yet),
    BATTERY_LOW, else ACCEPTED. The caller then verifies the signature
    (purpose b"ota", authority.signer_steps), in slices."""
    code, body, sig = split(msg)
    d = None
    if code == codes.ACCEPTED:
        code, d = parse(body)
    if code == codes.ACCEPTED:
        if d["b"] != board:
            code = codes.WRONG_BOARD
        elif d["v"] <= floor or d["v"] == refused:
            code = codes.OLD
        elif d["sz"] > slot_size:
            code = codes.RANGE
        elif bucket(meter_id) >= GROUP_PERCENT[d["g"]]:
            code = codes.REFUSED
        elif battery_mv is not None and battery_mv < max(min_mv, d.get("bat", 0)):
            code = codes.BATTERY_LOW
    return code, d, body, sig
