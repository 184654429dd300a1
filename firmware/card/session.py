# One card tap: detect, select, authenticate, read, verify, act through the
# meter's entry points, write the meter return record back, halt.
#
# The meter is the authority. A credit goes through meter.apply_credit(),
# which makes it durable before it answers ACCEPTED; only then is the return
# record (the meter's verdict on the card's credit) written to the card. A
# tap torn at any point is completed by the next tap: the credit record is
# still on the card, the ledger answers USED, and the return record is
# written again.
#
# Nothing here can stop metering: every failure becomes a result code and an
# event, and a tap is bounded by the reader's time-outs.
import codes
from card import records as R
from card.mifare import Classic
from card import mfrc522
from card import lockout
from card.lockout import Lockout


def _public_key_a(uid, sector, rev):
    # the key A family of multi-meter cards: public, one revision (0)
    from card.signed_card import key_a
    return key_a(uid, sector)

FW_VERSION = 0x0100
# Office-signed cards open with a public key A, so anyone can make one that
# reaches the signature check (seconds of ECDSA on an ESP32). Failed verifies
# have their own budget, apart from the lockout: SIG_BURST of them (two
# forged cards' worth of the per-UID lockout, so one locked-out forger leaves
# room for a genuine card), one more every SIG_REFILL_MS; while it is spent a
# signed card answers LOCKED_OUT before its verify. A good signature costs
# nothing from the budget.
SIG_BURST = const(6)
SIG_REFILL_MS = const(60_000)

# results that are authentication failures, the only ones the lockout counts:
# no key of ours opens the card, a forged MAC, a sector key that fails mid-tap
_AUTH_FAILURES = (codes.FOREIGN, codes.SIGNATURE, codes.AUTH)


class Session:
    def __init__(self, reader, meter, keys, clock, meter_id=None, region=None, fw=FW_VERSION,
                 lock_store=None):
        self.reader = reader
        self.card = Classic(reader)
        self.meter = meter
        self.keys = keys
        self.clock = clock
        self.meter_id = meter_id if meter_id is not None else meter.cfg["meter_id"]
        self.region = region if region is not None else meter.cfg["region"]
        self.fw = fw
        self.lockout = Lockout(clock, lock_store)
        self.last = None          # (code, card_type, uid) of the last tap, for UI/REPL
        self._blk = bytearray(16)
        self._key_a = keys.key_a  # the key A family of the card being tapped
        self._sig_left = SIG_BURST   # failed signature verifies still allowed (SIG_BURST)
        self._sig_t = clock.ticks_ms()

    # -- called by the meter loop ------------------------------------------
    def poll(self):
        """Look for a card; run a tap if one is there. Returns a result code,
        or None when no card is present (the usual, cheap case)."""
        try:
            if not self.reader.request(False):
                return None
        except mfrc522.CardError as e:
            # noise or a card half in the field: a result, not an exception
            return e.code
        uid = None
        ctype = 0
        try:
            uid = bytes(self.reader.uid[: self.reader.select()])
            gate = self.lockout.state(uid)
            if gate == lockout.LOCKED:
                self.card.halt()
                self.last = (codes.LOCKED_OUT, 0, uid)
                return codes.LOCKED_OUT
            code, ctype = self._tap(uid, gate == lockout.OWN_ONLY)
        except mfrc522.Unsupported:
            code = codes.FOREIGN
        except mfrc522.AuthFailed:
            code = codes.AUTH                 # a sector key failed mid-tap ...
            try:
                self._reselect()
            except mfrc522.CardError:
                code = codes.CARD_GONE        # ... or the card was pulled away
        except mfrc522.CardError as e:
            code = e.code
        except R.RecordError as e:
            code = e.code
        except Exception:  # a bug here must not reach the meter loop
            code = codes.UNKNOWN
        self.card.halt()
        if code == codes.LOCKED_OUT:
            self.last = (code, 0, uid)
            return code                       # the overflow gate held it: nothing to count
        if uid is not None and code in _AUTH_FAILURES:
            self.lockout.failed(uid)
        if code not in (codes.ACCEPTED, codes.USED):
            self._event(codes.EV_CARD_REJECTED, code)
        self.last = (code, ctype, uid)
        return code

    def _event(self, ev, arg=0):
        self.meter.event(ev, arg)

    # -- the tap -----------------------------------------------------------
    def _auth(self, sector, uid, rev):
        self.card.auth(sector, self._key_a(uid, sector, rev))

    def _read(self, first, n):
        out = b""
        for b in range(first, first + n):
            out += bytes(self.card.read(b, self._blk))
        return out

    def _try(self, uid, key_a, revs):
        # authenticate the header sector with each revision of one key family;
        # a failed try leaves the card idle, so it is selected again
        for rev in revs:
            try:
                self.card.auth(R.S_HEADER, key_a(uid, R.S_HEADER, rev))
                self._key_a = key_a
                return rev
            except mfrc522.AuthFailed:
                self._reselect()
        return None

    def _reselect(self):
        # After a failed authentication: a card that no longer answers left
        # the field (a wrong key and a card pulled away look the same to the
        # reader), which is RF trouble, not a failure of the card's keys.
        if self.card.connect(True) is None:
            raise mfrc522.CardGone("card left during authentication")

    def _open(self, uid, own_only):
        """Authenticate the header sector. Returns (rev, own): the key
        revision that opened it, and whether it is one of this meter's own
        cards (keyed by its card secret) or a multi-meter card (public key
        A, card/signed_card.py; rev 0). A card that opens only with a
        retired revision is KEY_EXPIRED; one that opens with the transport
        key BLANK; one that opens with nothing FOREIGN. With own_only (the
        lockout's overflow gate is shut) a card that opens with neither the
        meter's own key A nor the public one is LOCKED_OUT: office-signed
        cards still open, their verifies rationed by the signature budget."""
        k = self.keys
        rev = self._try(uid, k.key_a, k.order)
        if rev is not None:
            return rev, True
        if self._try(uid, _public_key_a, (0,)) is not None:
            return 0, False
        if own_only:
            raise R.RecordError(codes.LOCKED_OUT, "overflow gate shut")
        if k.retired and self._try(uid, k.key_a, k.retired) is not None:
            raise R.RecordError(codes.KEY_EXPIRED, "retired key revision")
        try:
            self.card.auth(R.S_HEADER, b"\xff" * 6)
        except mfrc522.AuthFailed:
            self._reselect()
            raise R.RecordError(codes.FOREIGN, "no key opens the card")
        raise R.RecordError(codes.BLANK, "transport keys")

    def _tap(self, uid, own_only=False):
        rev, own = self._open(uid, own_only)
        if not own:
            return self._signed(uid)
        raw = self._read(4, 2)
        try:
            h = R.peek_header(raw)
        except R.RecordError as e:
            if e.code == codes.BLANK:
                raise R.RecordError(codes.BLANK, "unissued card with our keys")
            raise
        if h.key_rev != rev or not self.keys.accepts(h.key_rev):
            raise R.RecordError(codes.KEY_EXPIRED, "key revision")
        if h.card_type not in (R.CARD_USER, R.CARD_INSTALL):
            # multi-meter cards are office-signed, never keyed by a meter
            raise R.RecordError(codes.SIGNATURE, "card type does not match its keys")
        if h.meter_id == self.meter_id:
            rkey = self.keys.record_key(rev)
        else:
            # our card secret opened it, so only a forger can have written this
            raise R.RecordError(codes.SIGNATURE, "card of meter %s" % h.meter_id)
        enc_mac = R.card_keys(rkey, uid)
        h = R.verify_header(raw, enc_mac[1], uid)
        self.lockout.passed(uid)
        if h.card_type != R.CARD_INSTALL and h.region != self.region:
            raise R.RecordError(codes.WRONG_REGION, "region %d" % h.region)
        t = h.card_type
        if t == R.CARD_USER:
            return self._user(uid, rev, h, enc_mac), t
        if t == R.CARD_INSTALL:
            self._auth(R.S_PAYLOAD, uid, rev)
            i = R.unpack_install(self._read(8, 3), enc_mac[1], uid)
            if i.meter_id != self.meter_id or i.account != h.account or i.region != h.region:
                return codes.FORMAT, t
            code = self.meter.install(i.account, i.region, i.seq, i.card_floor)
            if code == codes.ACCEPTED:
                self.region = i.region
            return code, t
        return codes.UNKNOWN, t

    def _user(self, uid, rev, h, enc_mac):
        self._auth(R.S_PAYLOAD, uid, rev)
        c = R.unpack_credit(self._read(8, 2), enc_mac, uid)
        if c.account != h.account or c.region != h.region or c.card_no != h.card_no:
            raise R.RecordError(codes.FORMAT, "credit does not match the header")
        code = codes.ACCEPTED
        verdict = R.NO_VERDICT
        if c.amount:
            # the one entry point: durable before it answers ACCEPTED
            code = verdict = self.meter.apply_credit("card", c.account, c.seq, c.amount)
        if c.flags & R.F_EMERGENCY:
            ec = self.meter.grant_emergency()
            if not c.amount:
                code = ec
        if code != codes.STORAGE:
            # the meter's word on this credit, for the office (docs/CARD.md §4.5)
            self._write_status(uid, rev, h, enc_mac[1], c.seq, verdict)
        return code

    def _status(self, h, credit_seq=0, verdict=R.NO_VERDICT):
        m = self.meter
        alarms = m.low_level & 0x0F
        if not m.want_open:
            alarms |= 0x10
        return R.Status(0, self.meter_id, h.account if h else 0, credit_seq, verdict, m.balance,
                        m.volume.ml() // 1000, alarms, self.fw, self.clock.time())

    def _write_status(self, uid, rev, h, mac_key, credit_seq, verdict):
        """Two copies in sectors 3 and 4: overwrite the one that is not the
        newest valid copy, so a torn write always leaves one good copy."""
        copies = []
        for s in (R.S_STATUS_A, R.S_STATUS_B):
            self._auth(s, uid, rev)
            copies.append(R.unpack_status(self._read(s * 4, 3), mac_key, uid))
        newest, st = R.newest_status(copies)
        target = R.S_STATUS_B if newest == 0 else R.S_STATUS_A
        s = self._status(h, credit_seq, verdict)
        s.gen = (st.gen + 1) if st is not None else 1
        data = R.pack_status(mac_key, uid, s, rev)
        self._auth(target, uid, rev)
        for i in range(3):
            self.card.write(target * 4 + i, data[16 * i: 16 * i + 16])

    # -- multi-meter cards: office-signed (card/signed_card.py, signed.py) ----
    def _signed(self, uid):
        """(code, card type) of a tariff, check or valve-test card. The
        document is read whole, then judged by signed.admit: the cheap
        checks first, the signature (seconds on an ESP32) last."""
        import signed
        from card import signed_card as SC
        ctype, length = SC.unpack_head(self.card.read(4, self._blk))
        data = b""
        n = SC.sectors_for(length)
        for s in range(1, 1 + n):
            if s > 1:   # sector 1 is open since _open
                self.card.auth(s, SC.key_a(uid, s))
            data += self._read(4 * s, 3)
        body, sig = SC.split(data, length)
        m = self.meter
        now = self.clock.time()
        kind = SC.KINDS[ctype]
        cheap = signed.tariff_judge(m) if ctype == R.CARD_TARIFF else signed.card_judge(m, now)

        def judge(d):
            # runs after the other cheap checks, just before the verify
            code = cheap(d)
            return codes.LOCKED_OUT if code == codes.ACCEPTED and not self._sig_allowed() else code
        code, d, _ = signed.admit(getattr(m, "office", None), SC.purpose(ctype), body, sig, kind,
                                  self.meter_id, self.region, now, judge)
        if code == codes.SIGNATURE:
            self._sig_left -= 1
        if code != codes.ACCEPTED:
            # a tariff card already applied is a good tap, not a rejection
            return (codes.ACCEPTED if code == codes.USED and ctype == R.CARD_TARIFF else code), ctype
        self.lockout.passed(uid)
        if ctype == R.CARD_TARIFF:
            return signed.apply_tariff(m, d), ctype
        code = m.office_note("c", d["n"])
        if code != codes.ACCEPTED:
            return code, ctype
        if ctype == R.CARD_VALVE:
            return m.valve_test("card", d.get("f", 0) == 1), ctype
        self._write_check(uid, SC.slots(length))
        days = d.get("h", 0)
        if isinstance(days, int) and 0 < days <= SC.MAX_HISTORY_DAYS:
            self._write_history(uid, SC.slots(length), days)
        return codes.ACCEPTED, ctype

    def _sig_allowed(self):
        # refill the failed-verify budget by the time gone since the last refill
        now = self.clock.ticks_ms()
        n = self.clock.ticks_diff(now, self._sig_t) // SIG_REFILL_MS
        if n < 0 or self._sig_left + n >= SIG_BURST:
            self._sig_left, self._sig_t = SIG_BURST, now
        elif n:
            self._sig_left += n
            self._sig_t = self.clock.ticks_add(self._sig_t, n * SIG_REFILL_MS)
        return self._sig_left > 0

    def _write_history(self, uid, slots, days):
        """The last `days` daily registers (storage/history.py) into this
        meter's earlier history slots, else blank ones; parts that find no
        room are left out: other meters' readings come first."""
        from card import signed_card as SC
        mine = R._mid(self.meter_id)
        own, blank = {}, []
        for s in slots:
            self.card.auth(s, SC.key_a(uid, s))
            b = bytes(self.card.read(s * 4, self._blk))
            if b[0] != R.MAGIC:
                blank.append(s)
            elif b[2] == SC.T_HISTORY and b[8:16] == mine:
                own[b[3]] = s
        rev = self.keys.order[0]
        mac_key = R.card_keys(self.keys.record_key(rev), uid)[1]
        recs = self.meter.history.records("d", 0, days)
        part = 0
        while True:
            chunk = []
            for r in recs:
                chunk.append(r)
                if len(chunk) == SC.HISTORY_DAYS:
                    break
            if not chunk:
                return
            s = own.pop(part, None) or (blank.pop(0) if blank else None)
            if s is None:
                return
            data = SC.pack_history(mac_key, uid, self.meter_id, rev, part, chunk[0][1],
                                   [(r[5] // 1000, r[7]) for r in chunk])
            self.card.auth(s, SC.key_a(uid, s))
            for i in range(3):
                self.card.write(s * 4 + i, data[16 * i: 16 * i + 16])
            part += 1

    def _write_check(self, uid, slots):
        """A check card gathers return records of many meters, one slot each:
        our own slot, else a blank one, else a history slot (readings come
        first), else the oldest. Each record is MACed with this meter's own
        record key, which the office knows."""
        from card.signed_card import key_a
        best = None
        best_gen = None
        mine = R._mid(self.meter_id)
        for s in slots:
            self.card.auth(s, key_a(uid, s))
            b = bytes(self.card.read(s * 4, self._blk))
            if b[0] != R.MAGIC or b[2] != R.T_STATUS:
                rank = -2 if b[0] != R.MAGIC else -1
                if best_gen is None or best_gen > rank:
                    best, best_gen = s, rank
                continue
            if b[8:16] == mine:
                best, best_gen = s, -3
                break
            gen = b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24
            if best_gen is None or gen < best_gen:
                best, best_gen = s, gen
        if best is None:
            raise R.RecordError(codes.RANGE, "no check slot on this card")
        rev = self.keys.order[0]
        mac_key = R.card_keys(self.keys.record_key(rev), uid)[1]
        st = self._status(None)    # a check card is bound to no account
        st.gen = self.clock.time()
        data = R.pack_status(mac_key, uid, st, rev)
        self.card.auth(best, key_a(uid, best))
        for i in range(3):
            self.card.write(best * 4 + i, data[16 * i: 16 * i + 16])
