# MicroPython side of bench/bench_ram.py's day figures: runs the simulator
# script given as argv[1] (boards/unix/simrun.py and its arguments) with
#  - the event log filled to EVENTS_FREE lines short of its compaction limit
#    before boot, so the day compacts it at least once;
#  - the live heap sampled at the meter's yield points: every SAMPLE_EVERY-th
#    asyncio.sleep_ms, gc.collect() then gc.mem_alloc(), printed as
#    "[ram] live=N", and micropython.mem_info(), whose "max blk sz" is the
#    largest block alive then (tools/sim.py passes these lines through).
# With RAMPROBE_ROMFS=IMAGE in the environment, the app is imported from that
# ROMFS image (mpremote romfs build: .mpy run in place) mounted at /rom, as a
# stand-in for frozen modules on a port without a frozen build
# (tests/host/test_ram_budget.py). The image's bytes sit in the heap: the
# probe prints "[ram] romfs=N" so they can be told apart.
import sys
import gc
import os

_img = os.getenv("RAMPROBE_ROMFS")
if _img:
    import vfs
    with open(_img, "rb") as f:
        _rom = f.read()
    vfs.mount(vfs.VfsRom(_rom), "/rom")
    sys.path.insert(0, "/rom")
    print("[ram] romfs=%d" % len(_rom))

import asyncio
import micropython

EVENTS_FREE = 8
SAMPLE_EVERY = 40

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

    log = EventLog(state, _Before())
    for i in range(FILE_EVENTS - EVENTS_FREE):     # the sim starts from a new meter
        log.add(codes.EV_VALVE_OPEN if i & 1 else codes.EV_VALVE_CLOSED)


_fill_log(sys.argv)
_calls = 0
_sleep_ms = asyncio.sleep_ms


def _sampled_sleep_ms(ms):
    global _calls
    _calls += 1
    if _calls % SAMPLE_EVERY == 1:
        gc.collect()
        print("[ram] live=%d" % gc.mem_alloc())
        micropython.mem_info()
    return _sleep_ms(ms)


asyncio.sleep_ms = _sampled_sleep_ms


def _task_died(loop, context):
    # a task that raised (a MemoryError in the meter or in the simulator's
    # models) ends the run at once instead of leaving the day to hang
    print("[ram] task died:")
    sys.print_exception(context["exception"])
    sys.exit(3)


asyncio.get_event_loop().set_exception_handler(_task_died)
with open(script) as f:
    _code = compile(f.read(), script, "exec")    # the source is not kept, as on a device
gc.collect()
exec(_code, {"__name__": "__main__"})
