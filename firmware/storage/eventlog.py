# Bounded, persisted event log.
#
# Events are (seq, time, code, arg). The newest RAM_EVENTS stay in RAM for the
# REPL and MQTT; every event is appended as one line to <dir>/events.log, and
# when the file passes FILE_EVENTS lines it is rewritten with the newest half
# (new file, then rename). A torn last line after a power cut is skipped.
#
# add() never raises: it is called from the meter loop, valve moves and
# credits, and a full flash or a fragmented heap must cost the file copy of
# an event, never metering. Files are read one bounded line at a time, so
# neither a compaction nor a damaged file needs more than a line of RAM.
import os

from codes import EV_STATE_RESTORED

RAM_EVENTS = const(64)
FILE_EVENTS = const(512)
_LINE_MAX = const(64)      # a record is under 45 bytes; longer is damage, read in pieces


class EventLog:
    def __init__(self, directory, clock):
        self._path = directory + "/events.log"
        self._clock = clock
        self._ring = []
        self._lines = 0
        self.seq = 0
        self.restored_gen = 0  # arg of the newest state-restored event in the file: a rollback witness
        self.lost = 0          # events that reached RAM but not the file (flash full or failing)
        self.listeners = []    # fn(event) called for each new event
        self._load()
        self.had_history = self.seq > 0   # events from before this boot: evidence of a past life

    def _load(self):
        # read as bytes: a flipped bit in the file must cost one line, not the meter
        try:
            with open(self._path, "rb") as f:
                for line in _lines(f):
                    ev = _parse(line)
                    if ev is None:
                        continue
                    self._lines += 1
                    self.seq = max(self.seq, ev[0])
                    if ev[2] == EV_STATE_RESTORED:
                        self.restored_gen = ev[3]
                    self._keep(ev)
        except (OSError, MemoryError):
            pass

    def _keep(self, ev):
        self._ring.append(ev)
        if len(self._ring) > RAM_EVENTS:
            self._ring.pop(0)

    def add(self, code, arg=0):
        """Log an event; returns it (None if the heap could not hold it)."""
        self.seq += 1
        try:
            ev = (self.seq, self._clock.time(), code, arg)
            self._keep(ev)
        except MemoryError:
            self.lost += 1
            return None
        try:
            if self._lines >= FILE_EVENTS:
                self._compact()
            with open(self._path, "a") as f:
                f.write("%d %d %d %d\n" % ev)
            self._lines += 1
        except Exception:  # noqa: BLE001 - OSError, MemoryError: the RAM copy stays
            self.lost += 1
        for fn in self.listeners:
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - a listener's trouble is its own
                pass
        return ev

    def _compact(self):
        # Two passes with one line in RAM at a time: reading all 512 lines
        # into a list took some 30 kB at once (32-bit), more than a busy
        # ESP32 heap has in one piece. Count the good lines, then copy the
        # newest half. A failure leaves the old file (and a stray .new).
        total = 0
        with open(self._path, "rb") as f:
            for line in _lines(f):
                if _parse(line) is not None:
                    total += 1
        skip = total - FILE_EVENTS // 2
        kept = 0
        new = self._path + ".new"
        with open(self._path, "rb") as f, open(new, "wb") as out:
            for line in _lines(f):
                if _parse(line) is None:
                    continue
                if skip > 0:
                    skip -= 1
                    continue
                out.write(line)
                kept += 1
        os.rename(new, self._path)
        self._lines = kept

    def recent(self, n=20):
        return self._ring[-n:]

    def since(self, seq):
        return [e for e in self._ring if e[0] > seq]


def _lines(f):
    # lines of at most _LINE_MAX bytes: a damaged file without newlines is
    # read in pieces (each fails to parse), never whole
    while True:
        line = f.readline(_LINE_MAX)
        if not line:
            return
        yield line


def _parse(line):
    if not line.endswith(b"\n"):
        return None        # torn by a power cut, or a piece of an overlong line
    parts = line.split()
    if len(parts) != 4:
        return None
    try:
        return tuple(int(p) for p in parts)
    except (ValueError, TypeError):
        return None
