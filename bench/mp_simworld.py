# MicroPython side of bench/bench_ram.py: heap at boot taken by the
# simulator's own parts, which a device does not have: the unix board's
# models (water, card, valve, pins, clock), the scenario table and
# simrun.py's compiled code. Prints "sim=N". argv[1]: a scratch state dir.
import gc
import sys
import mp_romfs

mp_romfs.mount()       # as bench/mp_ramprobe.py: the app from the same place
gc.collect()
before = gc.mem_alloc()
import boards
from boards.unix import scenarios
hw = boards.load("unix").build(state_dir=sys.argv[1], speed=300, start=scenarios.START)
with open("boards/unix/simrun.py") as f:
    code = compile(f.read(), "simrun.py", "exec")
gc.collect()
print("sim=%d" % (gc.mem_alloc() - before))
