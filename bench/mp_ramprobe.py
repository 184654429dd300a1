# MicroPython side of bench/bench_ram.py's day figures: runs the simulator
# script given as argv[1] (boards/unix/simrun.py and its arguments) with
#  - the event log filled to EVENTS_FREE lines short of its compaction limit
#    before boot, so the day compacts it at least once;
#  - the live heap sampled every SAMPLE_MS of real time by a thread:
#    gc.collect() then gc.mem_alloc(), printed as "[ram] live=N", and
#    micropython.mem_info(), whose "max blk sz" is the largest block alive
#    then (tools/sim.py passes these lines through);
#  - at the end, "[ram] events lost=N": events the meter's log could not keep.
# With RAMPROBE_ROMFS=IMAGE in the environment, the app is imported from that
# ROMFS image (mpremote romfs build: .mpy run in place) mounted at /rom, as a
# stand-in for frozen modules on a port without a frozen build
# (tests/host/test_ram_budget.py). The image's bytes sit in the heap: the
# probe prints "[ram] romfs=N" so they can be told apart.
import sys
import gc

import mp_romfs

_romfs = mp_romfs.mount()
if _romfs:
    print("[ram] romfs=%d" % _romfs)

import _thread
import time
import micropython

EVENTS_FREE = 8
SAMPLE_MS = 50

sys.argv.pop(0)          # the script sees its own argv, as when run alone
script = sys.argv[0]


def _fill_log(argv):
    from storage.eventlog import EventLog, FILE_EVENTS
    from boards.unix import scenarios
    import codes
    start = scenarios.SCENARIOS[argv[1]][0]
    state = argv[argv.index("--state") + 1]

    class _Before:      # events of the days before the scenario's start
        t = start - FILE_EVENTS * 60

        def time(self):
            self.t += 60
            return self.t

    import storage.eventlog
    print("[ram] app=%s" % storage.eventlog.__file__)    # from the image, or frozen
    log = EventLog(state, _Before())
    for i in range(FILE_EVENTS - EVENTS_FREE):     # the sim starts from a new meter
        log.add(codes.EV_VALVE_OPEN if i & 1 else codes.EV_VALVE_CLOSED)


_fill_log(sys.argv)

# every event log the run opens, to report at the end the events it could not
# store (EventLog.add swallows a MemoryError and counts it in .lost)
from storage.eventlog import EventLog  # noqa: E402

_logs = []
_init = EventLog.__init__


def _init_and_keep(self, *args):
    _init(self, *args)
    _logs.append(self)


EventLog.__init__ = _init_and_keep
_run = [True]


def _sampler():
    # a thread of its own, so it sees the meter's thread and the scenario's
    # alike, whichever way the board schedules them
    while _run[0]:
        time.sleep_ms(SAMPLE_MS)
        gc.collect()
        print("[ram] live=%d" % gc.mem_alloc())
        micropython.mem_info()


_thread.start_new_thread(_sampler, ())
# The simulator's script is imported as a module, not compiled from its file:
# frozen in the 32-bit build (tools/manifest.py), from the image with
# RAMPROBE_ROMFS, so its ~9 kB of bytecode, which no device carries, stays out
# of the heap measured. Without either it is compiled from source, as before.
if not script.endswith("boards/unix/simrun.py"):
    raise SystemExit("mp_ramprobe: runs boards/unix/simrun.py, not " + script)
from boards.unix import simrun  # noqa: E402
gc.collect()
try:
    simrun.run()
finally:
    _run[0] = False
    print("[ram] events lost=%d" % sum(getattr(lg, "lost", 0) for lg in _logs))
