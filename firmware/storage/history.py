# Frozen history registers (docs/METERING.md "History").
#
# At each local midnight the meter freezes a daily record, at each billing
# period end a monthly one: the volume register, the volume and the charge
# of the interval, the total charged so far, the balance and the alarms
# seen. A record is 56 bytes with its own CRC32 and goes into slot
# seq % slots of a fixed-size ring file, so a day costs one record write,
# never a rewrite of the file. Power safety comes from the order: the
# record is first part of the meter's two-copy state (the newest record of
# each ring is kept there), and only after that state save is it written to
# the ring; at boot the state's newest record is written again if its slot
# does not hold it. A cut inside a slot write tears only that slot, which
# held the oldest record (already past the ring's guaranteed depth).
#
# The open day and period are kept as the registers at their start; today()
# and month() are the differences to the live registers, so the sum of the
# daily volumes is the register's change and the sum of the daily charges is
# what was deducted, exactly. Alarm time is counted per alarm in seconds and
# the alarms seen since the last clear stay latched; both live in the state.
# RAM: two 56-byte buffers and a few ints; records are read from flash on
# demand, one at a time.
import os
import struct
from binascii import crc32

from micropython import const

DAYS = const(96)           # >= 90 days of daily records
MONTHS = const(40)         # >= 36 months of monthly records
_FMT = "<IIBBHqqqqq"       # seq, t, kind, alarms, span, ml, dml, tc, chg, bal
_BODY = const(52)
_REC = const(56)           # + CRC32
_DAY_S = const(86400)
_ALARM_SAVE_S = const(3600)   # an active alarm's counters are saved at least hourly

# alarm bits (a record's "al", the latch)
A_LEAK = const(1)
A_BURST = const(2)
A_TAMPER = const(4)
A_REVERSE = const(8)
A_BATTERY = const(16)
A_VALVE = const(32)
ALARMS = ("leak", "burst", "tamper", "reverse", "battery", "valve")
KEYS = ("seq", "t", "al", "span", "ml", "dml", "tc", "chg", "bal")


class Ring:
    """Fixed-slot ring file of CRC'd records: record seq lives in slot
    seq % slots; the newest is found by its sequence number."""

    def __init__(self, path, slots, kind):
        self.path = path
        self.slots = slots
        self.kind = kind
        self._buf = bytearray(_REC)
        self.writes = 0

    def read(self, seq):
        """The record with sequence seq as a tuple (KEYS order), or None
        (never written, overwritten by a newer one, or torn)."""
        if seq <= 0:
            return None
        try:
            with open(self.path, "rb") as f:
                f.seek((seq % self.slots) * _REC)
                n = f.readinto(self._buf)
        except OSError:
            return None
        return self._decode(n, seq)

    def _decode(self, n, seq):
        b = self._buf
        if n != _REC or struct.unpack_from("<I", b, _BODY)[0] != crc32(memoryview(b)[:_BODY]):
            return None
        r = struct.unpack_from(_FMT, b, 0)
        if r[2] != self.kind or (seq is not None and r[0] != seq):
            return None
        return r[:2] + r[3:]

    def newest(self):
        """Sequence number of the newest good record, 0 if none (a scan of
        every slot, one record in RAM: used when the state has none)."""
        best = 0
        try:
            with open(self.path, "rb") as f:
                for _ in range(self.slots):
                    r = self._decode(f.readinto(self._buf), None)
                    if r is not None and r[0] > best:
                        best = r[0]
        except OSError:
            pass
        return best

    def write(self, rec):
        """Write rec (KEYS order) into its slot, in place. The file is made
        once at full size (written under a new name, then renamed)."""
        b = self._buf
        seq, t, al, span, ml, dml, tc, chg, bal = rec
        struct.pack_into(_FMT, b, 0, seq, t, self.kind, al, span, ml, dml, tc, chg, bal)
        struct.pack_into("<I", b, _BODY, crc32(memoryview(b)[:_BODY]))
        try:
            f = open(self.path, "r+b")
        except OSError:
            self._create()
            f = open(self.path, "r+b")
        with f:
            f.seek((seq % self.slots) * _REC)
            f.write(b)
        self.writes += 1

    def _create(self):
        tmp = self.path + ".new"
        zero = bytes(_REC)
        with open(tmp, "wb") as f:
            for _ in range(self.slots):
                f.write(zero)
        os.rename(tmp, self.path)


class History:
    """The frozen registers and the open day's and period's start values.
    The meter feeds it (close_day, close_month, alarms) and saves its
    to_state() in the two-copy state; flush() writes records to the rings
    after that save."""

    def __init__(self, directory, live):
        self.daily = Ring(directory + "/hist_d.bin", DAYS, ord("D"))
        self.monthly = Ring(directory + "/hist_m.bin", MONTHS, ord("M"))
        self._live = live            # fn() -> (volume mL, total charged, balance)
        self.day_end = 0             # next local midnight; 0 until the clock is trusted
        ml, tc, _ = live()
        self.d0 = [ml, tc]           # registers at the open day's start
        self.m0 = [ml, tc]           # ... and at the open period's start
        self.d_al = 0                # alarms seen in the open day
        self.m_al = 0                # ... and in the open period
        self.secs = [0] * len(ALARMS)   # seconds each alarm has been active
        self.latched = 0             # alarms seen since the last clear
        self.active = 0
        self._alarm_t = 0            # time of the last alarms() call
        self._alarm_saved = 0        # time the counters were last saved while an alarm was on
        self.last_d = None           # newest daily record (also in the ring, once flushed)
        self.last_m = None
        self._unflushed = []         # rings whose newest record is not written yet

    # ---------------- the meter's side ----------------
    def anchor(self, now, tz):
        """First trusted time (or a clock set back): the open day ends at the
        next local midnight. A step back of less than a day over a frozen
        midnight keeps the day after it (that day is not frozen twice); a
        longer one is a clock that ran ahead, and the days restart from now."""
        end = ((now + tz) // _DAY_S + 1) * _DAY_S - tz
        last = self.last_d
        if last is not None and end <= last[1] and last[1] - now < _DAY_S:
            end = last[1] + _DAY_S
        self.day_end = end

    def close_day(self, now, tz):
        """Freeze the day(s) ended by now; the caller has billed up to
        self.day_end first. span > 1 when the meter was off over midnights."""
        span = (now - self.day_end) // _DAY_S + 1
        t = self.day_end + (span - 1) * _DAY_S
        self.last_d = self._freeze(self.last_d, self.d0, t, self.d_al, span)
        self.d_al = self.active
        self._unflushed.append(self.daily)
        self.anchor(now, tz)

    def close_month(self, t):
        """Freeze the billing period that ended at t (after its charges)."""
        self.last_m = self._freeze(self.last_m, self.m0, t, self.m_al, 1)
        self.m_al = self.active
        self._unflushed.append(self.monthly)

    def _freeze(self, last, start, t, al, span):
        ml, tc, bal = self._live()
        seq = last[0] + 1 if last else 1
        rec = (seq, t, al, span, ml, ml - start[0], tc, tc - start[1], bal)
        start[0], start[1] = ml, tc
        return rec

    def alarms(self, now, bits):
        """The alarms active at this poll (A_* bits). True when the state
        should be saved: a new alarm latched, or an hour of counting."""
        dt = now - self._alarm_t if self._alarm_t and now > self._alarm_t else 0
        self._alarm_t = now
        was = self.active
        self.active = bits
        if was and dt:
            for i in range(len(ALARMS)):
                if was & (1 << i):
                    self.secs[i] += dt
        self.d_al |= bits
        self.m_al |= bits
        new = bits & ~self.latched
        self.latched |= bits
        if new or (was and now - self._alarm_saved >= _ALARM_SAVE_S):
            self._alarm_saved = now
            return True
        return False

    def clear_latch(self):
        self.latched = self.active

    def flush(self):
        """After the state save: write the records it holds to the rings.
        A failure leaves them pending for the next save."""
        while self._unflushed:
            ring = self._unflushed[0]
            ring.write(self.last_d if ring is self.daily else self.last_m)
            self._unflushed.pop(0)

    def to_state(self):
        return [self.day_end, self.d0, self.m0, self.d_al, self.m_al, self.secs, self.latched,
                self.last_d, self.last_m]

    def load_state(self, s):
        (self.day_end, d0, m0, self.d_al, self.m_al, secs, self.latched, last_d, last_m) = s
        if len(d0) != 2 or len(m0) != 2 or len(secs) != len(ALARMS):
            raise ValueError("history state")
        self.d0, self.m0, self.secs = list(d0), list(m0), list(secs)
        self.last_d = tuple(last_d) if last_d else None
        self.last_m = tuple(last_m) if last_m else None
        # the newest records may not have reached their rings before a cut
        self._unflushed = []
        for ring, rec in ((self.daily, self.last_d), (self.monthly, self.last_m)):
            if rec is not None and ring.read(rec[0]) != rec:
                self._unflushed.append(ring)

    def adopt_rings(self):
        """No history in the state (a new meter, or the state was lost):
        number on from the rings' newest records."""
        for ring in (self.daily, self.monthly):
            n = ring.newest()
            if n:
                rec = ring.read(n)
                if ring is self.daily:
                    self.last_d = rec
                else:
                    self.last_m = rec

    # ---------------- reading (REPL, display, MQTT, check card) ----------------
    def today(self):
        """The open day so far: {"ml", "chg", "t0"} (t0 its start, 0 if the
        clock was never trusted)."""
        ml, tc, _ = self._live()
        return {"ml": ml - self.d0[0], "chg": tc - self.d0[1],
                "t0": self.day_end - _DAY_S if self.day_end else 0}

    def month(self):
        """The open billing period so far: {"ml", "chg"}."""
        ml, tc, _ = self._live()
        return {"ml": ml - self.m0[0], "chg": tc - self.m0[1]}

    def newest(self, kind="d"):
        last = self.last_d if kind == "d" else self.last_m
        return last[0] if last else 0

    def record(self, kind, seq):
        """Record seq of kind "d" or "m" as a tuple in KEYS order, or None."""
        ring = self.daily if kind == "d" else self.monthly
        last = self.last_d if kind == "d" else self.last_m
        if last is not None and seq == last[0]:
            return last            # the newest is in RAM, flushed or not
        if last is None or seq > last[0]:
            return None
        return ring.read(seq)

    def records(self, kind, before=0, n=8):
        """Up to n records of kind, newest first, with seq < before (0: from
        the newest). A generator: one record in RAM at a time."""
        seq = (before or self.newest(kind) + 1) - 1
        slots = DAYS if kind == "d" else MONTHS
        stop = max(0, self.newest(kind) - slots)
        while n > 0 and seq > stop:
            r = self.record(kind, seq)
            if r is not None:
                yield r
                n -= 1
            seq -= 1

    def hours(self):
        """Whole hours each alarm has been active, in ALARMS order."""
        return [s // 3600 for s in self.secs]
