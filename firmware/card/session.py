# One card tap: detect, select, authenticate, read, verify, act through the
# meter's entry points, write the meter return record back, halt.
#
# The meter is the authority. A credit goes through meter.apply_credit(),
# which makes it durable before it answers ACCEPTED; only then is the return
# record (with the last applied sequence) written to the card. A tap torn at
# any point is completed by the next tap: the credit record is still on the
# card, the ledger answers USED, and the return record is written again.
#
# Nothing here can stop metering: every failure becomes a result code and an
# event, and a tap is bounded by the reader's time-outs.
import codes
from card import records as R
from card.mifare import Classic
from card import mfrc522

FW_VERSION = 0x0100
LOCK_AFTER = 3            # consecutive bad cards before a lockout
LOCK_BASE_MS = 30_000     # first lockout; doubles each further bad card
LOCK_MAX_MS = 3_600_000

# results that count towards the lockout (RF trouble and USED do not)
_BAD = (codes.FOREIGN, codes.BLANK, codes.SIGNATURE, codes.WRONG_METER, codes.WRONG_REGION,
        codes.FORMAT, codes.KEY_EXPIRED, codes.OLD, codes.AUTH, codes.UNKNOWN, codes.RANGE)


class Session:
    def __init__(self, reader, meter, keys, clock, meter_id=None, region=None, fw=FW_VERSION):
        self.reader = reader
        self.card = Classic(reader)
        self.meter = meter
        self.keys = keys
        self.clock = clock
        self.meter_id = meter_id if meter_id is not None else meter.cfg["meter_id"]
        self.region = region if region is not None else meter.cfg["region"]
        self.fw = fw
        self.fails = 0
        self._lock_until = None
        self.last = None          # (code, card_type, uid) of the last tap, for UI/REPL
        self._blk = bytearray(16)

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
        if self.locked():
            self.card.halt()
            return codes.LOCKED_OUT
        uid = None
        ctype = 0
        try:
            uid = bytes(self.reader.uid[: self.reader.select()])
            code, ctype = self._tap(uid)
        except mfrc522.Unsupported:
            code = codes.FOREIGN
        except mfrc522.CardError as e:
            code = e.code
        except R.RecordError as e:
            code = e.code
        except Exception:  # a bug here must not reach the meter loop
            code = codes.UNKNOWN
        self.card.halt()
        self._account(code)
        self.last = (code, ctype, uid)
        return code

    def locked(self):
        if self._lock_until is None:
            return False
        if self.clock.ticks_diff(self._lock_until, self.clock.ticks_ms()) > 0:
            return True
        self._lock_until = None
        return False

    def _account(self, code):
        if code in _BAD:
            self.fails += 1
            if self.fails >= LOCK_AFTER:
                ms = LOCK_BASE_MS << min(self.fails - LOCK_AFTER, 7)
                self._lock_until = self.clock.ticks_add(self.clock.ticks_ms(), min(ms, LOCK_MAX_MS))
        elif code in (codes.ACCEPTED, codes.USED):
            self.fails = 0
        if code not in (codes.ACCEPTED, codes.USED):
            self._event(codes.EV_CARD_REJECTED, code)

    def _event(self, ev, arg=0):
        m = self.meter
        if hasattr(m, "event"):
            m.event(ev, arg)
        else:
            m.log.add(ev, arg)

    # -- the tap -----------------------------------------------------------
    def _auth(self, sector, uid, rev):
        self.card.auth(sector, self.keys.key_a(uid, sector, rev))

    def _read(self, first, n):
        out = b""
        for b in range(first, first + n):
            out += bytes(self.card.read(b, self._blk))
        return out

    def _open(self, uid):
        """Authenticate the header sector with our key A. Returns the key
        revision that opened it. Tells a blank card from a foreign one."""
        for i, rev in enumerate(self.keys.order):
            try:
                if i:
                    self.card.connect(True)
                self._auth(R.S_HEADER, uid, rev)
                return rev
            except mfrc522.AuthFailed:
                continue
        self.card.connect(True)
        try:
            self.card.auth(R.S_HEADER, b"\xff" * 6)
        except mfrc522.AuthFailed:
            raise R.RecordError(codes.FOREIGN, "no key opens the card")
        raise R.RecordError(codes.BLANK, "transport keys")

    def _tap(self, uid):
        rev = self._open(uid)
        raw = self._read(4, 2)
        try:
            h = R.peek_header(raw)
        except R.RecordError as e:
            if e.code == codes.BLANK:
                raise R.RecordError(codes.BLANK, "unissued card with our keys")
            raise
        if h.key_rev != rev or not self.keys.accepts(h.key_rev):
            raise R.RecordError(codes.KEY_EXPIRED, "key revision")
        if h.card_type in R.SERVICE_CARDS:
            if h.region != self.region:  # another region's key: say why, not "forged"
                raise R.RecordError(codes.WRONG_REGION, "region %d" % h.region)
            if h.meter_id:
                raise R.RecordError(codes.FORMAT, "service card bound to a meter")
            rkey = self.keys.region_key(rev)
        elif h.meter_id == self.meter_id:
            rkey = self.keys.record_key(rev)
        else:
            raise R.RecordError(codes.WRONG_METER, "card of meter %s" % h.meter_id)
        enc_mac = R.card_keys(rkey, uid)
        h = R.verify_header(raw, enc_mac[1], uid)
        if h.card_type != R.CARD_INSTALL and h.region != self.region:
            raise R.RecordError(codes.WRONG_REGION, "region %d" % h.region)
        t = h.card_type
        if t == R.CARD_USER:
            return self._user(uid, rev, h, enc_mac), t
        if t == R.CARD_CHECK:
            self._write_check(uid, rev, h)
            return codes.ACCEPTED, t
        if t == R.CARD_TARIFF:
            self._auth(R.S_PAYLOAD, uid, rev)
            d = R.unpack_tariff(self._read(8, 3), enc_mac[1], uid)
            code = self.meter.stage_tariff(d)
            return (codes.ACCEPTED if code == codes.USED else code), t
        if t == R.CARD_VALVE:
            fn = getattr(self.meter, "valve_test", None)
            if fn is None:
                return codes.UNKNOWN, t
            fn()
            return codes.ACCEPTED, t
        if t == R.CARD_INSTALL:
            self._auth(R.S_PAYLOAD, uid, rev)
            seq, mid, account, region = R.unpack_install(self._read(8, 2), enc_mac[1], uid)
            if mid != self.meter_id or account != h.account or region != h.region:
                return codes.FORMAT, t
            fn = getattr(self.meter, "install", None)
            if fn is None:
                return codes.UNKNOWN, t
            code = fn(account, region, seq)
            if code == codes.ACCEPTED:
                self.region = region
            return code, t
        return codes.UNKNOWN, t

    def _user(self, uid, rev, h, enc_mac):
        self._auth(R.S_PAYLOAD, uid, rev)
        c = R.unpack_credit(self._read(8, 2), enc_mac, uid)
        if c.account != h.account or c.region != h.region or c.card_no != h.card_no:
            raise R.RecordError(codes.FORMAT, "credit does not match the header")
        code = codes.ACCEPTED
        if c.amount:
            # the one entry point: durable before it answers ACCEPTED
            code = self.meter.apply_credit("card", c.account, c.seq, c.amount)
        if c.flags & R.F_EMERGENCY:
            fn = getattr(self.meter, "grant_emergency", None)
            if fn is not None:
                ec = fn()
                if not c.amount:
                    code = ec
        if code in (codes.ACCEPTED, codes.USED, codes.OLD):
            self._write_status(uid, rev, h, enc_mac[1])
        return code

    def _status(self, h):
        m = self.meter
        last = 0
        led = getattr(m, "ledger", None)
        if led is not None:
            last = led.last("card", h.account) or 0
        vol = 0
        if hasattr(m, "volume"):
            vol = m.volume.ml() // 1000
        alarms = getattr(m, "low_level", 0) & 0x0F
        if not getattr(m, "want_open", True):
            alarms |= 0x10
        return R.Status(0, self.meter_id, h.account, last, m.balance, vol, alarms, self.fw,
                        self.clock.time())

    def _write_status(self, uid, rev, h, mac_key):
        """Two copies in sectors 3 and 4: overwrite the one that is not the
        newest valid copy, so a torn write always leaves one good copy."""
        copies = []
        for s in (R.S_STATUS_A, R.S_STATUS_B):
            self._auth(s, uid, rev)
            copies.append(R.unpack_status(self._read(s * 4, 3), mac_key, uid))
        newest, st = R.newest_status(copies)
        target = R.S_STATUS_B if newest == 0 else R.S_STATUS_A
        s = self._status(h)
        s.gen = (st.gen + 1) if st is not None else 1
        data = R.pack_status(mac_key, uid, s, rev)
        self._auth(target, uid, rev)
        for i in range(3):
            self.card.write(target * 4 + i, data[16 * i: 16 * i + 16])

    def _write_check(self, uid, rev, h):
        """A check card gathers return records of many meters, one slot each
        (sectors 3..14): our own slot, else a blank one, else the oldest."""
        best = None
        best_gen = None
        mine = R._mid(self.meter_id)
        for s in R.CHECK_SLOTS:
            self._auth(s, uid, rev)
            b = bytes(self.card.read(s * 4, self._blk))
            if b[0] != R.MAGIC or b[2] != R.T_STATUS:
                if best_gen is None or best_gen > -1:
                    best, best_gen = s, -1
                continue
            if b[8:16] == mine:
                best, best_gen = s, -2
                break
            gen = b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24
            if best_gen is None or gen < best_gen:
                best, best_gen = s, gen
        mac_key = R.card_keys(self.keys.record_key(rev), uid)[1]
        st = self._status(h)
        st.gen = self.clock.time()
        data = R.pack_status(mac_key, uid, st, rev)
        self._auth(best, uid, rev)
        for i in range(3):
            self.card.write(best * 4 + i, data[16 * i: 16 * i + 16])
