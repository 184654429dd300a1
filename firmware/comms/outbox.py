# Store-and-forward outbox on flash.
#
# Telemetry and event records wait here until the broker has acknowledged
# them (QoS 1 PUBACK), so nothing is lost while the network is down or the
# meter restarts. Each record gets the next outbox sequence number, and
# records leave in sequence order.
#
# On flash: <dir>/outbox/<base seq, 8 hex digits> segment files, each holding
# up to seg_recs frames [length u8][record][crc32 u32], appended in place; and
# <dir>/outbox/meta ("<acked seq> <last event seq enqueued>"), replaced by
# rename. A torn last frame (power cut while appending) is dropped at boot.
# Segments whose records are all acknowledged are deleted.
#
# Bounded: at most max_segs segments (default 16 x 64 = 1024 records, 42 days
# of hourly telemetry). When a new segment is needed and none is free, the
# two oldest are merged: their telemetry (and any earlier summary) becomes
# one SUMMARY record covering that sequence range, their events are kept
# (the oldest dropped, and counted, only if events alone overflow), and
# on_overflow(n) is called so that the link logs EV_OUTBOX_OVERFLOW.
import os
import struct
from binascii import crc32

from comms import codec

_FRAME = ">B"
_CRC = ">I"


def _mkdir(p):
    try:
        os.mkdir(p)
    except OSError:
        pass


class Outbox:
    def __init__(self, directory, seg_recs=64, max_segs=16, on_overflow=None):
        if max_segs < 2 or seg_recs < 2:
            raise ValueError("outbox too small")
        self.dir = directory + "/outbox"
        _mkdir(self.dir)
        self.seg_recs = seg_recs
        self.max_segs = max_segs
        self.on_overflow = on_overflow
        self.segs = []          # base sequence of each segment file, ascending
        self.acked = 0          # highest sequence delivered
        self.ev_seen = 0        # highest event-log sequence enqueued
        self.next_seq = 1
        self.count = 0          # records waiting
        self.summarised = 0     # telemetry records folded into summaries since boot
        self.dropped_events = 0
        self.write_errors = 0
        self._tail_n = 0        # records in the newest segment
        self._cache = None      # (base, [records]) of the head segment
        self._load()

    # ---------------- files ----------------
    def _path(self, base):
        return "%s/%08x" % (self.dir, base)

    def _read_seg(self, base):
        """(records, torn) of one segment file."""
        recs = []
        torn = False
        try:
            with open(self._path(base), "rb") as f:
                raw = f.read()
        except OSError:
            return recs, False
        off = 0
        while off < len(raw):
            n = raw[off]
            end = off + 1 + n + 4
            if n == 0 or end > len(raw):
                torn = True
                break
            rec = raw[off + 1:off + 1 + n]
            if struct.unpack_from(_CRC, raw, off + 1 + n)[0] != crc32(rec) & 0xFFFFFFFF:
                torn = True
                break
            recs.append(bytes(rec))
            off = end
        return recs, torn

    def _write_seg(self, base, recs):
        tmp = self._path(base) + ".new"
        with open(tmp, "wb") as f:
            for r in recs:
                f.write(_frame(r))
        os.rename(tmp, self._path(base))

    def _remove(self, base):
        try:
            os.remove(self._path(base))
        except OSError:
            pass

    def _write_meta(self):
        tmp = self.dir + "/meta.new"
        with open(tmp, "w") as f:
            f.write("%d %d\n" % (self.acked, self.ev_seen))
        os.rename(tmp, self.dir + "/meta")

    def _load(self):
        try:
            with open(self.dir + "/meta") as f:
                a, e = f.read().split()
            self.acked, self.ev_seen = int(a), int(e)
        except (OSError, ValueError):
            pass
        bases = []
        for name in os.listdir(self.dir):
            if len(name) == 8:
                try:
                    bases.append(int(name, 16))
                except ValueError:
                    pass
        bases.sort()
        last = self.acked
        for i, base in enumerate(bases):
            recs, torn = self._read_seg(base)
            if torn:
                self._write_seg(base, recs)
            live = 0
            for r in recs:
                s = codec.seq_of(r)
                last = max(last, s)
                if r[0] == codec.EVENT:
                    self.ev_seen = max(self.ev_seen, struct.unpack_from(">I", r, 5)[0])
                if s > self.acked:
                    live += 1
            if live == 0 and i < len(bases) - 1:
                self._remove(base)
                continue
            self.segs.append(base)
            self.count += live
            self._tail_n = len(recs)
        self.next_seq = last + 1

    # ---------------- the queue ----------------
    def append(self, rec):
        """Give rec (a codec record) the next sequence and store it. Returns
        the sequence. OSError if the flash write fails (the record is lost)."""
        overflow = 0
        if not self.segs or self._tail_n >= self.seg_recs:
            if len(self.segs) >= self.max_segs:
                overflow = self._compact()
            self.segs.append(self.next_seq)
            self._tail_n = 0
        seq = self.next_seq
        codec.set_seq(rec, seq)
        rec = bytes(rec)
        try:
            with open(self._path(self.segs[-1]), "ab") as f:
                f.write(_frame(rec))
        except OSError:
            self.write_errors += 1
            if self._tail_n == 0:
                self.segs.pop()
            raise
        self.next_seq = seq + 1
        self._tail_n += 1
        self.count += 1
        if rec[0] == codec.EVENT:
            self.ev_seen = max(self.ev_seen, struct.unpack_from(">I", rec, 5)[0])
        if self._cache is not None and self._cache[0] == self.segs[-1]:
            self._cache[1].append(rec)
        if overflow and self.on_overflow is not None:
            self.on_overflow(overflow)
        return seq

    def _head_records(self, base):
        if self._cache is None or self._cache[0] != base:
            self._cache = (base, self._read_seg(base)[0])
        return self._cache[1]

    def peek(self, max_n=16, max_bytes=900):
        """The oldest waiting records that go out on one topic, in order."""
        out = []
        size = 0
        chan = None
        for i, base in enumerate(self.segs):
            recs = self._head_records(base) if i == 0 else self._read_seg(base)[0]
            for r in recs:
                if codec.seq_of(r) <= self.acked:
                    continue
                c = codec.channel(r[0])
                if chan is None:
                    chan = c
                elif c != chan or len(out) >= max_n or size + len(r) > max_bytes:
                    return out
                out.append(r)
                size += len(r)
            if out and len(out) >= max_n:
                return out
        return out

    def ack(self, recs):
        """The broker has these records (from peek): forget them."""
        if not recs:
            return
        self.acked = max(self.acked, codec.seq_of(recs[-1]))
        self.count = max(0, self.count - len(recs))
        while self.segs:
            base = self.segs[0]
            last = self.segs[1] - 1 if len(self.segs) > 1 else self.next_seq - 1
            if last > self.acked:
                break
            self._remove(base)
            self.segs.pop(0)
            if not self.segs:
                self._tail_n = 0
            if self._cache is not None and self._cache[0] == base:
                self._cache = None
        self._write_meta()

    def _compact(self):
        """Merge the two oldest segments; returns how many records were
        summarised or dropped."""
        a, b = self.segs[0], self.segs[1]
        recs = [r for r in self._read_seg(a)[0] + self._read_seg(b)[0]
                if codec.seq_of(r) > self.acked]
        before = len(recs)
        tel = []
        evs = []
        n = 0
        first = last = 0
        t0 = t1 = ml0 = ml1 = bal = 0
        dropped = 0
        for r in recs:
            kind = r[0]
            if kind == codec.EVENT:
                evs.append(r)
                continue
            if kind == codec.BATT:
                continue        # a snapshot: the next report carries a newer one
            d = codec.decode_record(r)[0]
            if kind == codec.TELE:
                n += 1
                lo, hi, ta, tb, ma, mb = d["seq"], d["seq"], d["t"], d["t"], d["ml"], d["ml"]
                tel.append(r)
            else:
                n += d["n"]
                dropped += d["dropped"]
                lo, hi, ta, tb, ma, mb = d["seq"], d["last"], d["t0"], d["t1"], d["ml0"], d["ml1"]
            if not first:
                first, t0, ml0 = lo, ta, ma
            last, t1, ml1, bal = hi, tb, mb, d["bal"]
        keep = self.seg_recs - 1
        if len(evs) > keep:
            k = len(evs) - keep
            dropped += k
            self.dropped_events += k
            evs = evs[k:]
        out = list(evs)
        if first:
            s = codec.summary(first, last, n, t0, t1, ml0, ml1, bal, dropped)
            out.append(bytes(s))
        out.sort(key=codec.seq_of)
        self._write_seg(a, out)
        self._remove(b)
        self.segs.pop(1)
        self._cache = None
        self.count += len(out) - before
        self.summarised += len(tel)
        return max(1, before - len(out))


def _frame(rec):
    return struct.pack(_FRAME, len(rec)) + rec + struct.pack(_CRC, crc32(rec) & 0xFFFFFFFF)
