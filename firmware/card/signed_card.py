# Multi-meter cards (tariff, check, valve-test): an office-signed document
# (firmware/signed.py, docs/PROTOCOL.md §4.7) stored on a MIFARE Classic
# card. docs/CARD.md "Multi-meter cards" is the contract; the offsets below
# are normative. Importable by MicroPython (the meter) and CPython (the
# vending station), so plain ints, no const().
#
# The signature is the authority: every key A of these cards derives from a
# PUBLIC master, so any meter (and anyone) can read them, and a dump of a
# meter gives nothing that makes one. Key B is the office's (records.py), so
# a customer cannot rewrite a technician's card in place; copying it to
# another card copies a signature that is valid anyway, which is why a card
# document carries a scope, an expiry and a sequence.
#
# Layout: the container runs through the data blocks of sectors 1, 2, ...
# (trailers skipped):
#   0 magic 'W' | 1 version | 2 record type 0x05 | 3 card type (3, 4, 5) |
#   4-5 body length L (u16 LE) | 6-7 zero | 8.. body (L bytes of JSON) |
#   then the 64-byte signature r || s over the body alone, for purpose
#   "tariff" (tariff cards: the same document as a region tariff) or "card".
# Sectors after the container, up to sector 15, are check-card slots.
#
# A check document with "h": N asks each meter for its last N daily
# registers too: after its status record (card/records.py) a meter writes
# history records into its own earlier history slots or blank slots, never
# over another meter's record. One slot holds 6 days, newest first:
#   0 magic | 1 version | 2 type 0x11 | 3 part (0: the newest six) |
#   4-7 t of the part's newest record (u32) | 8-15 meter id |
#   16 key revision | 17 count (1..6) | 18-19 zero |
#   20-43 six (litres u16, charge u16 in minor units), saturating at 65535 |
#   44-47 MAC: first 4 bytes of HMAC(meter's record MAC key, uid || 0..43)
import struct

from card import records as R

T_SIGNED = 0x05
PUBLIC_MA = b"wm1 public key A"      # public by design, see above
HEAD = 8
SIG = 64
LAST_SECTOR = 15                     # 1K layout, also used on 4K cards
T_HISTORY = 0x11
HISTORY_DAYS = 6                     # days per history slot
MAX_HISTORY_DAYS = 42                # what a check document may ask ("h")
_HIST = "<BBBBI8sBBH"                # the 20-byte head of a history slot
KINDS = {R.CARD_TARIFF: "tariff", R.CARD_CHECK: "check", R.CARD_VALVE: "valve"}


def purpose(card_type):
    return b"tariff" if card_type == R.CARD_TARIFF else b"card"


def key_a(uid, sector):
    return R.sector_key(PUBLIC_MA, b"A", uid, sector, 0)


def sectors_for(length):
    """How many sectors (from sector 1) a container with an L-byte body fills."""
    return (HEAD + length + SIG + 47) // 48


def slots(length):
    """Check-card status slots: the sectors after the container."""
    return tuple(range(1 + sectors_for(length), LAST_SECTOR + 1))


def data_blocks(n_sectors):
    out = []
    for s in range(1, 1 + n_sectors):
        out += [4 * s, 4 * s + 1, 4 * s + 2]
    return out


def pack(card_type, body, sig):
    if card_type not in KINDS or len(sig) != SIG:
        raise R.RecordError(R.FORMAT, "card type or signature")
    if sectors_for(len(body)) > LAST_SECTOR - (1 if card_type == R.CARD_CHECK else 0):
        raise R.RecordError(R.RANGE, "document too long for a card")
    return (struct.pack("<BBBBHH", R.MAGIC, R.VERSION, T_SIGNED, card_type, len(body), 0)
            + bytes(body) + bytes(sig))


def unpack_head(block):
    """(card type, body length) from the container's first block."""
    b = bytes(block)
    if all(x == 0 for x in b):
        raise R.RecordError(R.BLANK, "blank")
    magic, ver, rtype, ctype, length, _ = struct.unpack("<BBBBHH", b[:8])
    if magic != R.MAGIC or ver != R.VERSION or rtype != T_SIGNED:
        raise R.RecordError(R.FORMAT, "not a multi-meter card")
    if ctype not in KINDS:
        raise R.RecordError(R.UNKNOWN, "card type")
    if sectors_for(length) > LAST_SECTOR:
        raise R.RecordError(R.FORMAT, "length")
    return ctype, length


def split(data, length):
    """(body, sig) from the container bytes."""
    return bytes(data[HEAD:HEAD + length]), bytes(data[HEAD + length:HEAD + length + SIG])


def pack_history(mac_key, uid, meter_id, key_rev, part, t, days):
    """48 bytes: days is up to 6 (litres, charge in money units), newest first."""
    body = struct.pack(_HIST, R.MAGIC, R.VERSION, T_HISTORY, part, t, R._mid(meter_id), key_rev,
                       len(days), 0)
    for i in range(HISTORY_DAYS):
        litres, charge = days[i] if i < len(days) else (0, 0)
        body += struct.pack("<HH", min(max(litres, 0), 0xFFFF), min(max(charge // 1000, 0), 0xFFFF))
    return body + R.hmac_sha256(mac_key, bytes(uid) + body)[:R.STATUS_MAC]


def unpack_history(b, mac_key, uid):
    """(meter id, part, t, [(litres, charge minor units)]) or None if torn or forged."""
    b = bytes(b)
    if len(b) != 48 or b[0] != R.MAGIC or b[1] != R.VERSION or b[2] != T_HISTORY:
        return None
    if not R.equal(R.hmac_sha256(mac_key, bytes(uid) + b[:44])[:R.STATUS_MAC], b[44:48]):
        return None
    _, _, _, part, t, mid, _, count, _ = struct.unpack(_HIST, b[:20])
    if count > HISTORY_DAYS:
        return None
    days = [struct.unpack_from("<HH", b, 20 + 4 * i) for i in range(count)]
    return mid.rstrip(b"\x00").decode(), part, t, days


# -- the vending station (CPython) -------------------------------------------

def plan_issue(issuer, uid, card_type, body, sig):
    """[(block, 16 bytes)] to write a blank card (transport keys): data
    first, trailers last. Container sectors: read with key A, write with
    key B; check slots: read and write with key A (any meter writes its
    reading there, MACed with its own record key)."""
    from card.mifare import access_bytes, trailer
    uid = bytes(uid)
    data = pack(card_type, body, sig)
    n = sectors_for(len(body))
    data += bytes(48 * n - len(data))
    blocks = data_blocks(n)
    plan = [(blk, data[16 * i:16 * i + 16]) for i, blk in enumerate(blocks)]
    check = slots(len(body)) if card_type == R.CARD_CHECK else ()
    for s in check:
        plan += [(4 * s + i, bytes(16)) for i in range(3)]
    plan.append((1, bytes(16)))
    plan.append((2, bytes(16)))
    for s in (0,) + tuple(range(1, 1 + n)) + tuple(check):
        acc = R.ACC_METER if s in check else R.ACC_ISSUER
        plan.append((4 * s + 3, trailer(key_a(uid, s), access_bytes(*acc), issuer.key_b(uid, s))))
    return plan
