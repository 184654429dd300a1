# History registers (storage/history.py): flash writes per day and the RAM
# they cost, on a simulated meter drawing a household's 150 L a day over
# 100 days (polls every 10 minutes, tap use in the morning and evening).
#
#   MICROPYPATH=.frozen:firmware:.:tests/mp:build/lib .venv/bin/micropython bench/bench_history.py
# With the 32-bit frozen build of `make ram32` (docs/BUILD.md), the figures
# of the target's word size and of bytecode in ROM:
#   MICROPYPATH=.frozen:tests/mp:build/lib MPY_SRC/ports/unix/build-meter32/micropython bench/bench_history.py
import gc
import os
import sys

gc.collect()
_m0 = gc.mem_alloc()
from storage import history as hist  # noqa: E402
gc.collect()
MODULE = gc.mem_alloc() - _m0

from simkit import make_meter  # noqa: E402

DAYS = 100


def main():
    m, hw = make_meter(reopen="auto", max_balance=10 ** 9, max_topup=10 ** 9)
    m.apply_credit("card", 1, 1, 500_000_000)
    flow = hw.world.flow
    ring_writes0 = m.history.daily.writes + m.history.monthly.writes
    saves0 = m.store.writes
    for step in range(DAYS * 144):
        minute = (step % 144) * 10
        # 06:00-07:00 and 19:00-20:00 local: 75 L each
        flow.set_rate_lph(75 if 360 <= minute < 420 or 1140 <= minute < 1200 else 0)
        hw.clock.advance(600_000)
        m.poll()
    h = m.history
    ring = h.daily.writes + h.monthly.writes - ring_writes0
    saves = m.store.writes - saves0
    print("simulated %d days at %d L/day" % (DAYS, m.volume.ml() // 1000 // DAYS))
    print("ring record writes: %d (%.2f a day): %d daily, %d monthly" % (
        ring, ring / DAYS, h.daily.writes, h.monthly.writes))
    print("state saves: %d (%.1f a day; the history's share: one at each midnight and period end)"
          % (saves, saves / DAYS))
    print("ring files: %s %d B, %s %d B (record %d B)" % (
        "hist_d.bin", os.stat(h.daily.path)[6], "hist_m.bin", os.stat(h.monthly.path)[6],
        os.stat(h.daily.path)[6] // hist.DAYS))
    import json
    print("state growth from the history: %d B of JSON" % len(json.dumps(h.to_state())))
    # RAM: the module, one History object, one page read
    gc.collect()
    a0 = gc.mem_alloc()
    extra = hist.History(hw.state_dir, m._registers)
    gc.collect()
    obj = gc.mem_alloc() - a0
    del extra
    gc.collect()
    a0 = gc.mem_alloc()
    page = list(h.records("d", 0, 8))
    gc.collect()
    page_b = gc.mem_alloc() - a0
    del page
    try:
        os.stat(hist.__file__)
        where = "from " + hist.__file__
    except (OSError, AttributeError):
        where = "frozen"              # a frozen module's __file__ is no file on disk
    print("RAM (%d-bit, module %s; live after gc): module %d B, History object %d B, "
          "a page of 8 records %d B while held"
          % (32 if sys.maxsize < 1 << 32 else 64, where, MODULE, obj, page_b))


main()
