# The ULP counter as the battery board runs it: firmware/ulp/counter.S
# assembled by micropython-esp32-ulp 1.2.0 (tools/fetch_ulp_asm.py puts it in
# build/lib), executed by the emulator on pulses from the flow model.
import sys
import boards.ulp as ulpboot
from boards.unix.clock import SimClock
from boards.unix.flow import FlowSensor
from boards.unix.reed import ReedContact
from boards.unix.ulp_emu import UlpEmu
from metering.ulpcount import UlpSource

PULSE_RTC_IO = 4         # GPIO34, as counter.S reads it
_bin = None


class _NoBtree:
    pass


def binary():
    global _bin
    if _bin is None:
        # the assembler imports btree for an optional defines database
        # (a defines.db file) that is not used here; the unix port lacks it
        sys.modules.setdefault("btree", _NoBtree)
        from esp32_ulp.assemble import Assembler
        from esp32_ulp.link import make_binary
        from esp32_ulp.preprocess import preprocess
        with open("firmware/ulp/counter.S") as f:
            src = preprocess(f.read())
        # src_to_binary's steps without its print of the symbol table
        # ("0006 entry"), which would land in a bench's output
        asm = Assembler()
        asm.assemble(src, remove_comments=False)
        _bin = make_binary(*asm.fetch())
    return _bin


class OpenValve:
    def passes(self):
        return True


class Rig:
    def __init__(self, k=(1, 1), bounce_us=0, chatter_us=500, samples=ulpboot.SAMPLES):
        self.clock = SimClock()
        self.flow = FlowSensor(self.clock, OpenValve(), k[0], k[1])
        self.reed = ReedContact(self.clock, self.flow, bounce_us, chatter_us)
        self.ulp = UlpEmu(self.clock, {PULSE_RTC_IO: self.reed})
        self.samples = samples
        self.boot(power_lost=True)

    def boot(self, power_lost=False):
        """What the board does at every start: (re)start the ULP if needed,
        then a pulse source over its memory."""
        fresh = ulpboot.start(self.ulp, self.ulp, binary(), power_lost, samples=self.samples)
        self.src = UlpSource(self.ulp, fresh)
        return fresh

    def pour(self, litres, lph):
        self.flow.pour(litres * 1000, lph)
        # run until the measure is full, plus time for the last edge to settle
        us = litres * 3_600_000_000 // lph + 1_000_000
        self.clock.advance_us(us)
