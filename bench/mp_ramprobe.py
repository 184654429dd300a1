# MicroPython side of bench/bench_ram.py's day figures: runs the simulator
# script given as argv[1] (boards/unix/simrun.py and its arguments) with
#  - the event log filled to EVENTS_FREE lines short of its compaction limit
#    before boot, so the day compacts it at least once;
#  - the live heap sampled at the meter's yield points: every SAMPLE_EVERY-th
#    asyncio.sleep_ms, gc.collect() then gc.mem_alloc(), printed as
#    "[ram] live=N", and micropython.mem_info(), whose "max blk sz" is the
#    largest block alive then (tools/sim.py passes these lines through).
import sys
import gc
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
with open(script) as f:
    _code = compile(f.read(), script, "exec")    # the source is not kept, as on a device
gc.collect()
exec(_code, {"__name__": "__main__"})
