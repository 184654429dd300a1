# The event log compacts in bounded memory: with only a few kB of the heap
# free, as on a busy ESP32, compaction at the file limit still works and keeps
# the newest half in order.
import gc
from mptest import fresh_dir
from storage.eventlog import EventLog, FILE_EVENTS

HEAP = "96K"


class Clock:
    t = 1767603600

    def time(self):
        self.t += 1
        return self.t


def _ballast(leave):
    # fill the heap until about `leave` bytes are free, big blocks first, then
    # smaller ones into the gaps; a chain of pairs, so no list has to regrow
    held = None
    gc.collect()
    for size in (1024, 256, 64, 16):
        try:
            while gc.mem_free() > leave + size:
                held = (bytearray(size), held)
        except MemoryError:
            pass
    gc.collect()
    assert gc.mem_free() < leave + 512, gc.mem_free()
    return held


def test_compaction_runs_in_a_nearly_full_heap():
    d = fresh_dir("evram")
    log = EventLog(d, Clock())
    for i in range(FILE_EVENTS):
        log.add(7, i)
    held = _ballast(6 * 1024)
    log.add(8, 4242)            # the file is at its limit: this add compacts
    del held
    with open(d + "/events.log") as f:
        lines = f.read().split("\n")[:-1]
    assert len(lines) == FILE_EVENTS // 2 + 1, len(lines)
    args = [int(ln.split()[3]) for ln in lines]
    assert args[:-1] == list(range(FILE_EVENTS - FILE_EVENTS // 2, FILE_EVENTS)), args[:3]
    assert args[-1] == 4242
    again = EventLog(d, Clock())
    assert again.seq == FILE_EVENTS + 1 and again.recent(1)[0][3] == 4242
