# MicroPython side of bench/bench_ram.py: heap at boot taken by the
# simulator's own parts, which a device does not have: the unix board's
# models (water, card, valve, pins, clock), the scenario table and
# simrun.py's module (frozen in the 32-bit build, else compiled), less the
# firmware modules it imports. Prints "sim=N". argv[1]: a scratch state dir.
import gc
import sys
import mp_romfs

mp_romfs.mount()       # as bench/mp_ramprobe.py: the app from the same place
import codes  # noqa: E402,F401 - the firmware simrun.py imports is the meter's share
import main  # noqa: E402,F401
import units  # noqa: E402,F401
gc.collect()
before = gc.mem_alloc()
import boards
from boards.unix import scenarios
hw = boards.load("unix").build(state_dir=sys.argv[1], speed=300, start=scenarios.START)
import boards.unix.simrun  # noqa: F401 - its bytecode, as bench/mp_ramprobe.py loads it
gc.collect()
print("sim=%d" % (gc.mem_alloc() - before))
