#!/usr/bin/env python3
"""Vending station for the meter's MIFARE Classic cards (CPython 3.11).

Issues, tops up, reads and audits cards with the same record code as the
meter (firmware/card/records.py). Cards are reached through a Reader:

  ImageReader  a card image file (JSON) as used by the tests and `make sim`;
               it talks to boards/unix/mifare_card.py at the frame level, so
               keys and access bits are enforced exactly as on a real card;
  PcscReader   a PC/SC desktop reader (pyscard; ACR122U-style pseudo-APDUs),
               the seam for a real station. Untested here: no reader attached.

Examples:
  cardtool.py --test-keys new card.json --uid 11223344
  cardtool.py --test-keys issue card.json user --meter M000001 --region 1 --account 42
  cardtool.py --test-keys topup card.json --amount 1000000
  cardtool.py --test-keys read card.json
  cardtool.py --test-keys audit card.json
  cardtool.py --keys issuer.json meter-secret M000123 --into meter/secrets.json

A meter opens its own user and install cards with its card secret, derived
from the issuer's record master MR for its id (docs/CARD.md §3.2):
`meter-secret METER` prints {"card": {"rev", "rec"[, "min_rev"]}} for the
meter's provisioning file, or with --into merges it into that file (mode
0600; an entry of another revision is kept, so rotating adds one).

Keys: --keys FILE with {"rev": 1, "mb": hex, "mr": hex} (issuer masters, 16+
bytes each), or --test-keys for the public test masters, which no meter
outside a test build accepts. Multi-meter cards (tariff, check, valve-test)
are signed with the office key: --office FILE (PEM, tools/office.py), or
--test-office for the public test office key:
  cardtool.py --test-keys --test-office issue t.json tariff --region 1 \
      --tariff '{"v": 2, "at": 0, "sc": 0, "b": [[0, 350000]]}'
  cardtool.py --test-keys --test-office issue c.json check --meters M000001,M000002
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "boards" / "unix"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import mifare_card as MC
from card import keys as K
from card import records as R
from card import signed_card as SC
from card.mifare import TRANSPORT_KEY, access_bytes, access_conditions

sys.path.insert(0, str(ROOT / "tools"))
from office import OfficeKey

CARD_DAYS = 30         # a multi-meter card's validity (the meter allows 31 days at most)

ACK = 0x0A


class CardIOError(Exception):
    pass


# -- readers -------------------------------------------------------------------

class Reader:
    """What the station needs from a reader. connect() -> uid bytes."""

    def connect(self):
        raise NotImplementedError

    def auth(self, sector, key, key_b=False):
        raise NotImplementedError

    def read(self, block):
        raise NotImplementedError

    def write(self, block, data):
        raise NotImplementedError

    def close(self):
        pass


class ImageReader(Reader):
    """A card image file, driven through the card model's air interface."""

    def __init__(self, path, create=None):
        self.path = Path(path)
        self.card = create if create is not None else MC.ClassicCard.load(str(self.path))

    def _frame(self, data):
        out = self.card.rf(MC.to_bits(MC.with_crc(bytes(data))))
        if out is None:
            return None, 0
        bits = out[0]
        return MC.from_bits(bits), len(bits)

    def connect(self):
        c = self.card
        c.power_off()
        atqa = c.rf(MC.to_bits(b"\x52", 7))
        if atqa is None:
            raise CardIOError("no card")
        for level in range(2 if len(c.uid) == 7 else 1):
            cln = c._cln(level)
            sel = (0x93, 0x95)[level]
            _resp, n = self._frame(bytes((sel, 0x70)) + cln)
            if n != 24:
                raise CardIOError("select failed")
        return bytes(c.uid)

    def auth(self, sector, key, key_b=False):
        c = self.card
        blk = c.trailer_block(sector)
        if not c.authenticate(0x61 if key_b else 0x60, blk, bytes(key), c.auth_uid()):
            self.connect()
            raise CardIOError(f"authentication failed for sector {sector}")

    def read(self, block):
        resp, n = self._frame(bytes((0x30, block)))
        if n != 144:
            raise CardIOError(f"read of block {block} refused")
        if MC.crc_a(resp, 18):
            raise CardIOError("CRC")
        return bytes(resp[:16])

    def write(self, block, data):
        resp, n = self._frame(bytes((0xA0, block)))
        if n != 4 or resp[0] & 0x0F != ACK:
            raise CardIOError(f"write of block {block} refused")
        resp, n = self._frame(bytes(data))
        if n != 4 or resp[0] & 0x0F != ACK:
            raise CardIOError(f"write of block {block} failed")

    def close(self):
        self.card.save(str(self.path))


class PcscReader(Reader):
    """PC/SC reader through pyscard, using the PC/SC part 3 storage-card
    pseudo-APDUs (LOAD KEYS FF 82, GENERAL AUTHENTICATE FF 86, READ BINARY
    FF B0, UPDATE BINARY FF D6) that ACR122U-class readers implement."""

    def __init__(self, index=0):
        from smartcard.System import readers  # pyscard, installed on the station only
        self.conn = readers()[index].createConnection()
        self.uid = None

    def _apdu(self, apdu):
        data, sw1, sw2 = self.conn.transmit(list(apdu))
        if (sw1, sw2) != (0x90, 0x00):
            raise CardIOError(f"APDU {bytes(apdu[:4]).hex()}: {sw1:02X}{sw2:02X}")
        return bytes(data)

    def connect(self):
        self.conn.connect()
        self.uid = self._apdu([0xFF, 0xCA, 0x00, 0x00, 0x00])
        return self.uid

    def auth(self, sector, key, key_b=False):
        self._apdu([0xFF, 0x82, 0x00, 0x00, 0x06] + list(key))
        blk = sector * 4 + 3 if sector < 32 else 128 + (sector - 32) * 16 + 15
        self._apdu([0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, blk, 0x61 if key_b else 0x60, 0x00])

    def read(self, block):
        return self._apdu([0xFF, 0xB0, 0x00, block, 0x10])

    def write(self, block, data):
        self._apdu([0xFF, 0xD6, 0x00, block, 0x10] + list(data))


# -- the station -----------------------------------------------------------------

class OfficeBook:
    """The office's record of the sequence numbers it has issued: per account
    for credits, per meter for installation cards. The meter applies each
    (account, seq) once, so a number must never be issued twice, not even on
    a second or replacement card of the same account; a card alone cannot
    know what the account's other cards were given. A JSON file, rewritten
    atomically (new file, then rename)."""

    def __init__(self, path):
        self.path = Path(path)
        self.d = {"credit": {}, "install": {}, "card": {}}
        if self.path.exists():
            try:
                d = json.loads(self.path.read_text())
            except ValueError as e:
                raise CardIOError(f"office book {self.path} is damaged: {e}") from None
            for kind in self.d:
                self.d[kind].update(d.get(kind, {}))

    def next(self, kind, key, at_least=0):
        return max(int(self.d[kind].get(str(key), 0)), at_least) + 1

    def record(self, kind, key, seq):
        k = str(key)
        self.d[kind][k] = max(int(self.d[kind].get(k, 0)), seq)
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.write_text(json.dumps(self.d, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


class Station:
    def __init__(self, issuer, reader, book=None):
        self.issuer = issuer
        self.reader = reader
        self.book = book

    def _auth_b(self, uid, sector):
        self.reader.auth(sector, self.issuer.key_b(uid, sector), True)

    def _read(self, first, n):
        return b"".join(self.reader.read(b) for b in range(first, first + n))

    def issue(self, h, payload=None):
        """Personalise a blank card (transport keys). Returns the UID."""
        uid = self.reader.connect()
        plan = R.plan_issue(self.issuer, uid, h, payload)
        cur = None
        for blk, data in plan:
            s = blk // 4 if blk < 128 else 32 + (blk - 128) // 16
            if s != cur:
                try:
                    self.reader.auth(s, TRANSPORT_KEY)
                except CardIOError:
                    raise CardIOError(f"sector {s} is not blank (transport key refused)")
                cur = s
            self.reader.write(blk, data)
        return uid

    def issue_signed(self, office, card_type, doc):
        """Write an office-signed multi-meter card (card/signed_card.py) on a
        blank card. Returns the UID."""
        body = json.dumps(doc, separators=(",", ":")).encode()
        sig = office.sign(SC.purpose(card_type), body)
        uid = self.reader.connect()
        cur = None
        for blk, data in SC.plan_issue(self.issuer, uid, card_type, body, sig):
            if blk // 4 != cur:
                cur = blk // 4
                try:
                    self.reader.auth(cur, TRANSPORT_KEY)
                except CardIOError:
                    raise CardIOError(f"sector {cur} is not blank (transport key refused)")
            self.reader.write(blk, data)
        return uid

    def read_signed(self, uid):
        """A multi-meter card, or None if this is a user or install card."""
        self._auth_b(uid, R.S_HEADER)
        try:
            ctype, length = SC.unpack_head(self.reader.read(4))
        except R.RecordError:
            return None
        data = b""
        for s in range(1, 1 + SC.sectors_for(length)):
            self._auth_b(uid, s)
            data += self._read(4 * s, 3)
        body, sig = SC.split(data, length)
        out = {"uid": uid.hex(), "header": {"type": R.CARD_NAMES[ctype]},
               "document": json.loads(body), "signature": sig.hex()}
        if ctype == R.CARD_CHECK:
            readings, history = [], {}
            for s in SC.slots(length):
                self._auth_b(uid, s)
                raw = self._read(s * 4, 3)
                if raw[0] != R.MAGIC:
                    continue
                mid = raw[8:16].rstrip(b"\x00").decode(errors="replace")
                mac_key = R.card_keys(self.issuer.meter_key(mid), uid)[1]
                if raw[2] == SC.T_HISTORY:
                    h = SC.unpack_history(raw, mac_key, uid)
                    if h is None:
                        readings.append({"meter": mid, "error": "MAC"})
                    else:
                        history.setdefault(mid, {})[h[1]] = {"t": h[2], "days": [list(x) for x in h[3]]}
                    continue
                st = R.unpack_status(raw, mac_key, uid)
                readings.append(_status_dict(st) or {"meter": mid, "error": "MAC"})
            out["readings"] = readings
            if history:
                # per meter, the parts in order: [litres, charge in minor units], newest day first
                out["history"] = {m: {"t": p[0]["t"] if 0 in p else None,
                                      "days": [d for k in sorted(p) for d in p[k]["days"]]}
                                  for m, p in history.items()}
        return out

    def header(self, uid):
        # the office reads with key B: key A of a user card is its meter's
        self._auth_b(uid, R.S_HEADER)
        raw = self._read(4, 2)
        h = R.peek_header(raw)
        R.verify_header(raw, R.card_keys(self.issuer.meter_key(h.meter_id), uid)[1], uid)
        return h

    def read(self):
        """Everything the office can learn from a card, as a dict."""
        uid = self.reader.connect()
        signed = self.read_signed(uid)
        if signed is not None:
            return signed
        out = {"uid": uid.hex()}
        h = self.header(uid)
        out["header"] = {"type": R.CARD_NAMES[h.card_type], "region": h.region,
                         "meter": h.meter_id, "account": h.account, "card_no": h.card_no,
                         "key_rev": h.key_rev}
        if h.card_type == R.CARD_USER:
            keys = R.card_keys(self.issuer.meter_key(h.meter_id), uid)
            self._auth_b(uid, R.S_PAYLOAD)
            raw = self._read(8, 2)
            try:
                c = R.unpack_credit(raw, keys, uid)
                out["credit"] = {"seq": c.seq, "amount": c.amount, "flags": c.flags}
            except R.RecordError as e:
                out["credit"] = None if e.code == R.BLANK else {"error": e.code}
            copies = []
            for s in (R.S_STATUS_A, R.S_STATUS_B):
                self._auth_b(uid, s)
                copies.append(R.unpack_status(self._read(s * 4, 3), keys[1], uid))
            out["status"] = [_status_dict(x) for x in copies]
            newest = R.newest_status(copies)[1]
            out["returned"] = _status_dict(newest)
            out["verdict"] = credit_verdict(out["credit"], newest)
            out["consumed"] = out["verdict"] in ("none", "applied", "settled", "voided")
        return out

    def topup(self, amount, seq=None, flags=0, force=False):
        """Load a new credit. Refused while the previous one is unconsumed
        (overwriting it would lose it; merging could apply it twice)."""
        info = self.read()
        if info["header"]["type"] != "user":
            raise CardIOError("not a user card")
        if not info["consumed"] and not force:
            raise CardIOError("the meter has not said that it applied the previous credit (seq {}): "
                              "tap it first, or re-issue it (cardtool reissue)".format(
                                  info["credit"]["seq"]))
        hd = info["header"]
        last = (info["credit"] or {}).get("seq", 0)
        if self.book is not None:
            last = self.book.next("credit", hd["account"], last) - 1
        seq = last + 1 if seq is None else seq
        if seq <= last:
            raise CardIOError(f"sequence {seq} is not new (last {last})")
        self._write_credit(info, seq, amount, flags)
        if self.book is not None:
            self.book.record("credit", hd["account"], seq)
        return seq

    def _write_credit(self, info, seq, amount, flags):
        uid = bytes.fromhex(info["uid"])
        hd = info["header"]
        h = R.Header(R.CARD_USER, hd["region"], hd["meter"], hd["account"], hd["card_no"],
                     hd["key_rev"])
        c = R.Credit(seq, h.account, h.region, amount, flags, h.card_no)
        self._auth_b(uid, R.S_PAYLOAD)
        for blk, data in R.plan_credit(self.issuer, uid, h, c):
            self.reader.write(blk, data)

    def reissue(self, seq=None, amount=None):
        """Write a credit again under its OWN key (card, account, seq): the
        card's own credit, or with seq and amount from the office's records
        (a credit lost with a card, onto its replacement). The meter applies
        a key at most once, so a re-issue of a credit that was in fact
        applied only answers USED: no verdict is needed, true or forged
        (docs/CARD.md §6). Refused for a sequence the office never issued,
        and when the card's own record says the meter applied or voided it."""
        info = self.read()
        if info["header"]["type"] != "user":
            raise CardIOError("not a user card")
        cr = info.get("credit") or {}
        seq = cr.get("seq") if seq is None else seq
        amount = cr.get("amount") if amount is None else amount
        if not seq or not amount or amount <= 0:
            raise CardIOError("no credit on this card to re-issue: give --seq and --amount "
                              "from the office's records")
        if self.book is not None and seq >= self.book.next("credit", info["header"]["account"]):
            raise CardIOError(f"sequence {seq} was never issued to this account: use topup")
        if cr.get("seq") == seq and info["verdict"] in ("applied", "voided"):
            raise CardIOError(f"the meter's record on the card says seq {seq} was {info['verdict']}")
        self._write_credit(info, seq, amount, cr.get("flags", 0) if cr.get("seq") == seq else 0)
        return seq

    def audit(self):
        """A list of findings; empty when the card is sound."""
        problems = []
        uid = self.reader.connect()
        signed = self.read_signed(uid)
        if signed is not None:
            return self._audit_signed(uid, signed)
        try:
            h = self.header(uid)
        except (R.RecordError, CardIOError) as e:
            return [f"header: {e}"]
        slots = (R.S_STATUS_A, R.S_STATUS_B)
        for s in (0, R.S_HEADER, R.S_PAYLOAD) + tuple(slots):
            try:
                self.reader.auth(s, TRANSPORT_KEY)
                problems.append(f"sector {s} opens with the transport key")
            except CardIOError:
                pass
            try:
                self._auth_b(uid, s)
                t = self.reader.read(s * 4 + 3 if s < 32 else 128 + (s - 32) * 16 + 15)
            except CardIOError as e:
                problems.append(f"sector {s}: {e}")
                continue
            acc = R.ACC_ISSUER if s in (0, R.S_HEADER, R.S_PAYLOAD) else R.ACC_METER
            if access_conditions(t[6:9]) != acc or t[6:9] != access_bytes(*acc):
                problems.append(f"sector {s}: access bits {t[6:9].hex()}")
        try:
            info = self.read()
        except (R.RecordError, CardIOError) as e:
            return problems + [f"read: {e}"]
        if h.card_type == R.CARD_USER:
            if isinstance(info["credit"], dict) and "error" in info["credit"]:
                problems.append(f"credit record: error {info['credit']['error']}")
            if all(x is None for x in info["status"]) and info["credit"] and \
                    info.get("returned") is None and info["credit"].get("seq", 0) > 1:
                problems.append("no valid return record")
        return problems


    def _audit_signed(self, uid, info):
        """Trailers of a multi-meter card: public key A, office key B, and
        the meters' write access to check slots only."""
        problems = []
        length = len(json.dumps(info["document"], separators=(",", ":")).encode())
        check = SC.slots(length) if info["header"]["type"] == "check" else ()
        for s in (0,) + tuple(range(1, 1 + SC.sectors_for(length))) + tuple(check):
            try:
                self._auth_b(uid, s)
                t = self.reader.read(s * 4 + 3)
            except CardIOError as e:
                problems.append(f"sector {s}: {e}")
                continue
            acc = R.ACC_METER if s in check else R.ACC_ISSUER
            if access_conditions(t[6:9]) != acc:
                problems.append(f"sector {s}: access bits {t[6:9].hex()}")
        return problems


def credit_verdict(credit, status):
    """What the office may conclude about a card's credit from the meter's
    return record (docs/CARD.md §6). Only the meter's final, positive words
    count: "applied" (ACCEPTED/USED), "voided" (the office's own void) and
    "settled" (OLD: settled long ago, so applied unless the office voided
    it). Anything else is "unsettled": a card can never prove that a credit
    was NOT applied, because an older return record can be put back. A
    refund or re-issue needs the meter's signed answer to a void (head-end)."""
    if credit is None:
        return "none"
    if "seq" not in credit or status is None or status.credit_seq != credit["seq"]:
        return "unsettled"
    return {R.OK: "applied", R.USED: "applied", R.OLD: "settled",
            R.VOIDED: "voided"}.get(status.verdict, "unsettled")


def _status_dict(s):
    if s is None:
        return None
    return {"gen": s.gen, "meter": s.meter_id, "account": s.account, "credit_seq": s.credit_seq,
            "verdict": s.verdict, "balance": s.balance, "volume_l": s.volume_l,
            "alarms": s.alarms, "fw": s.fw, "time": s.time}


# -- command line ------------------------------------------------------------------

def load_issuer(args):
    if args.test_keys:
        return K.testing_issuer()
    if not args.keys:
        raise SystemExit("give --keys FILE (or --test-keys for simulated cards)")
    try:
        d = json.loads(Path(args.keys).read_text())
        return K.IssuerKeys(d["mb"], d["mr"], d.get("rev", 1))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"issuer key file {args.keys}: {e!r} "
                         '(want {"rev": 1, "mb": hex, "mr": hex})') from None


def meter_secret(issuer, meter_id, min_rev=0, into=None):
    """The card section of one meter's secrets.json; merged into `into`."""
    entry = issuer.meter_secrets(meter_id, min_rev)
    if into is None:
        print(json.dumps({"card": entry}))
        return 0
    p = Path(into)
    try:
        sec = json.loads(p.read_text()) if p.exists() else {}
    except ValueError as e:
        raise SystemExit(f"{p} is not JSON: {e}") from None
    if sec.get("id", meter_id) != meter_id:
        raise SystemExit(f"{p} is meter {sec['id']!r}'s, not {meter_id!r}")
    old = sec.get("card", [])
    others = [e for e in (old if isinstance(old, list) else [old]) if e.get("rev") != issuer.rev]
    sec["card"] = [*others, entry] if others else entry
    fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(sec, f)
    print(f"card keys of {meter_id} (revision {issuer.rev}) -> {p}")
    return 0


def load_office(args):
    if args.test_office:
        return OfficeKey.testing()
    if not args.office:
        raise SystemExit("multi-meter cards are office-signed: give --office FILE "
                         "(or --test-office for simulated cards)")
    return OfficeKey.load(args.office)


def _u32(text):
    v = int(text)
    if not 0 <= v <= R.SEQ_MAX:
        raise argparse.ArgumentTypeError(f"0..{R.SEQ_MAX}")
    return v


def _uid(text):
    # a MIFARE Classic UID is single (4 bytes) or double size (7 bytes)
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex") from None
    if len(uid) not in (4, 7):
        raise argparse.ArgumentTypeError(f"{text!r} is {len(uid)} bytes: a UID has 4 or 7")
    return uid


def _tariff_arg(text):
    t = json.loads(text)
    if not isinstance(t, dict) or "v" not in t or "b" not in t:
        raise argparse.ArgumentTypeError('tariff as JSON: {"v": 2, "at": 0, "sc": 0, "b": [[0, 350000]]}')
    return t


def _card_doc(args, ctype, book):
    """The signed document of a multi-meter card (docs/CARD.md)."""
    import time
    if args.meters:
        doc = {"m": args.meters.split(",")}
    elif args.region is not None:
        doc = {"r": args.region}
    else:
        raise SystemExit("a multi-meter card needs --region or --meters")
    if ctype == R.CARD_TARIFF:
        if not args.tariff:
            raise SystemExit("--tariff is required for tariff cards")
        doc.update(args.tariff, k="tariff")
        return doc
    n = book.next("card", "office")
    book.record("card", "office", n)
    start = int(time.time()) if args.start is None else args.start
    doc.update(k=SC.KINDS[ctype], n=n, x=start + args.days * 86400)
    if ctype == R.CARD_CHECK and args.history:
        if not 0 < args.history <= SC.MAX_HISTORY_DAYS:
            raise SystemExit(f"--history is 1..{SC.MAX_HISTORY_DAYS} days")
        doc["h"] = args.history
    if ctype == R.CARD_VALVE and args.override:
        doc["f"] = 1
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cardtool", description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", help="issuer key file (JSON)")
    ap.add_argument("--test-keys", action="store_true", help="use the public test masters")
    ap.add_argument("--office", help="office signing key (PEM) for multi-meter cards")
    ap.add_argument("--test-office", action="store_true", help="use the public test office key")
    ap.add_argument("--book", help="office book of issued sequence numbers "
                                   "(default: office-book.json beside the card image)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("new", help="create a blank card image")
    p.add_argument("image")
    p.add_argument("--uid", required=True, type=_uid, help="4 or 7 bytes, hex")
    p.add_argument("--size", choices=("1k", "4k"), default="1k")

    p = sub.add_parser("issue", help="personalise a blank card")
    p.add_argument("image")
    p.add_argument("type", choices=("user", "install", "tariff", "check", "valve-test"))
    p.add_argument("--meter", default="")
    p.add_argument("--region", type=int, help="user/install: the meter's; multi-meter: the scope")
    p.add_argument("--meters", help="multi-meter cards: comma-separated meter ids (instead of --region)")
    p.add_argument("--days", type=int, default=CARD_DAYS, help="multi-meter cards: days valid")
    p.add_argument("--history", type=int, default=0,
                   help="check cards: ask each meter for its last N daily registers (1..42)")
    p.add_argument("--start", type=int, help="multi-meter cards: validity starts (Unix s; default now)")
    p.add_argument("--override", action="store_true", help="valve-test: cycle even with no credit")
    p.add_argument("--account", type=_u32, default=0)
    p.add_argument("--card-no", type=int, default=1)
    p.add_argument("--amount", type=int, default=0, help="first credit, money units")
    p.add_argument("--tariff", type=_tariff_arg, help="tariff card content (JSON)")

    p = sub.add_parser("topup", help="load a credit onto a user card")
    p.add_argument("image")
    p.add_argument("--amount", type=int, required=True, help="money units (1/1000 minor unit)")
    p.add_argument("--seq", type=_u32)
    p.add_argument("--emergency", action="store_true", help="also request emergency credit")
    p.add_argument("--force", action="store_true", help="overwrite an unconsumed credit")

    p = sub.add_parser("reissue", help="write a credit again under its own sequence (applied at most once)")
    p.add_argument("image")
    p.add_argument("--seq", type=_u32, help="the credit's sequence (default: the card's own credit)")
    p.add_argument("--amount", type=int, help="its amount (default: the card's own credit)")

    p = sub.add_parser("meter-secret", help="a meter's card keys for its secrets.json (docs/CARD.md 3.2)")
    p.add_argument("meter")
    p.add_argument("--min-rev", type=int, default=0, help="retire the revisions below this one")
    p.add_argument("--into", help="merge into this secrets.json (else print the JSON)")

    for name in ("read", "audit"):
        p = sub.add_parser(name)
        p.add_argument("image")

    args = ap.parse_args(argv)
    if args.cmd == "new":
        card = MC.ClassicCard(args.uid, 1024 if args.size == "1k" else 4096)
        card.save(args.image)
        print(f"blank {args.size} card {args.uid.hex()} -> {args.image}")
        return 0

    issuer = load_issuer(args)
    if args.cmd == "meter-secret":
        return meter_secret(issuer, args.meter, args.min_rev, args.into)
    reader = ImageReader(args.image)
    book = OfficeBook(args.book or Path(args.image).resolve().parent / "office-book.json")
    st = Station(issuer, reader, book)
    try:
        if args.cmd == "issue":
            ctype = {"user": R.CARD_USER, "install": R.CARD_INSTALL, "tariff": R.CARD_TARIFF,
                     "check": R.CARD_CHECK, "valve-test": R.CARD_VALVE}[args.type]
            if ctype in SC.KINDS:
                uid = st.issue_signed(load_office(args), ctype, _card_doc(args, ctype, book))
                print(f"issued {args.type} card {uid.hex()} (office-signed)")
                return 0
            if not args.meter or args.region is None:
                raise SystemExit(f"--meter and --region are required for {args.type} cards")
            h = R.Header(ctype, args.region, args.meter, args.account, args.card_no, issuer.rev)
            uid = reader.card.uid
            keys = R.card_keys(issuer.meter_key(h.meter_id), uid)
            payload = None
            seq = None
            if ctype == R.CARD_USER and args.amount:
                seq = ("credit", h.account, book.next("credit", h.account))
                payload = R.pack_credit(keys, uid, R.Credit(seq[2], h.account, h.region, args.amount,
                                                            0, h.card_no, issuer.rev))
            elif ctype == R.CARD_INSTALL:
                seq = ("install", args.meter, book.next("install", args.meter))
                # every card credit the office issued for the account so far is
                # settled on this meter from now on: an unapplied one is re-issued
                floor = book.next("credit", args.account) - 1
                payload = R.pack_install(keys[1], uid, R.Install(seq[2], args.meter, args.account,
                                                                 args.region, floor), issuer.rev)
            st.issue(h, payload)
            if seq is not None:
                book.record(*seq)
            print(f"issued {args.type} card {uid.hex()}")
        elif args.cmd == "topup":
            seq = st.topup(args.amount, args.seq, R.F_EMERGENCY if args.emergency else 0,
                           args.force)
            print(f"credit {args.amount} loaded as seq {seq}")
        elif args.cmd == "reissue":
            seq = st.reissue(args.seq, args.amount)
            print(f"credit re-issued under its own seq {seq}")
        elif args.cmd == "read":
            print(json.dumps(st.read(), indent=2))
        elif args.cmd == "audit":
            problems = st.audit()
            for x in problems:
                print("PROBLEM:", x)
            print("audit: %s" % ("ok" if not problems else f"{len(problems)} problem(s)"))
            if problems:
                return 1
    except (CardIOError, R.RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
