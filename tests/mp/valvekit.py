# Helpers for the valve tests: a simulated board with a valve controller on
# it, without a meter, and an event log that only records.
import boards
import codes
from mptest import fresh_dir
from valve.controller import build_valve


class Log:
    def __init__(self):
        self.ev = []

    def add(self, code, arg=0):
        self.ev.append((code, arg))

    def codes(self, code):
        return [a for c, a in self.ev if c == code]


def rig(valve="latching", feedback="both", valve_open=False, **cfg):
    """(controller, hw, log) for one valve on a fresh simulated board."""
    hw = boards.load("unix").build(state_dir=fresh_dir("v"), valve=valve, feedback=feedback,
                                   valve_open=valve_open, valve_cfg=cfg)
    log = Log()
    ctl = build_valve(hw.valve_cfg, hw.valve_open_pin, hw.valve_close_pin, hw.clock, log,
                      hw.valve_fb_open_pin, hw.valve_fb_closed_pin)
    ctl.target = 1 if valve_open else 0
    ctl.position = ctl.target
    return ctl, hw, log


def steps(ctl, hw, n, ms=1000):
    for _ in range(n):
        hw.clock.advance(ms)
        ctl.step(hw.clock.time())


class BothHigh:
    """Watches the two bridge inputs; counts any instant both are high."""

    def __init__(self, hw):
        self.n = 0
        self.a = hw.valve_open_pin
        self.b = hw.valve_close_pin
        self.a.watch(self._w)
        self.b.watch(self._w)

    def _w(self, pin, old, new):
        if self.a.value() and self.b.value():
            self.n += 1


def faults(log):
    return log.codes(codes.EV_VALVE_FAULT)
