# Pulses counted by the ULP coprocessor while the CPU sleeps (battery boards).
#
# The ULP program (firmware/ulp/counter.S) only ever increments a 16-bit
# count in RTC slow memory. The CPU never writes it: it remembers the last
# count it folded into the volume (mark()), and the Meter saves that mark in
# its CRC-checked state together with the volume it produced. take() is the
# difference, mod 2^16. So a reset between a take() and the save restores
# the older mark with the older volume, and the same pulses are taken once
# more: none is lost and none counts twice. RTC slow memory survives deep
# sleep and CPU resets, not a power-on or brown-out: then the board reloads
# the program (count 0) and says so with fresh=True, and the saved mark is
# no longer a position in that count.
#
# ram: word(i) / set_word(i, v) over RTC slow memory (machine.mem32 on the
# chip, boards/unix/ulp_emu.py in the tests).

W_COUNT = const(0)       # word offsets of the shared variables (counter.S)
W_THRESHOLD = const(1)
W_STABLE = const(2)
W_PENDING = const(3)
W_SAMPLES = const(4)
W_MAGIC = const(5)
MAGIC = const(0x5A17)    # counter.S's `magic`: the memory holds a running count
ENTRY = const(24)        # byte address of `entry` (after the six words)
ARM_MAX = const(0x7000)  # furthest wake threshold: well inside the 2^15 window
_MASK = const(0xFFFF)


class UlpSource:
    def __init__(self, ram, fresh):
        self._ram = ram
        self._fresh = fresh
        self._seen = 0 if fresh else ram.word(W_COUNT) & _MASK

    def mark(self):
        """The count folded in so far: saved with the volume it produced."""
        return self._seen

    def resume(self, mark):
        """The mark of the state just restored (None: a state without one)."""
        if mark is not None and not self._fresh:
            self._seen = mark & _MASK

    def take(self):
        c = self._ram.word(W_COUNT) & _MASK
        n = (c - self._seen) & _MASK
        self._seen = c
        return n

    def wake_after(self, pulses):
        """Have the ULP wake the CPU once this many pulses are counted past
        the mark (clamped to 1..ARM_MAX, so the count never runs so far
        ahead of the mark that the difference wraps)."""
        n = 1 if pulses < 1 else ARM_MAX if pulses > ARM_MAX else pulses
        self._ram.set_word(W_THRESHOLD, (self._seen + n) & _MASK)
