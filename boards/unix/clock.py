# Simulated clock for the unix board.
#
# Virtual time is kept in microseconds as a plain integer. Tests step it by
# hand (speed=0), so every run is deterministic; `make sim` lets it follow the
# host clock multiplied by `speed`. Either way virtual time moves only at the
# firmware's await points (sleep_ms) and blocking delays (delay_us), never
# under a running transaction: a card exchange or a coil pulse sees exactly
# the time it waits, however long the host takes to compute it. Device models attached to the clock are
# advanced piecewise between their own events (a valve finishing its travel,
# say), so a flow that stops when the valve seats stops at the right instant.
import time
import asyncio

_MASK = const((1 << 30) - 1)
_HALF = const(1 << 29)
EPOCH_2026 = const(1767225600)  # 2026-01-01T00:00:00Z, the default start


class SimClock:
    def __init__(self, start=EPOCH_2026, speed=0):
        self._us = 0
        self._epoch_us = start * 1_000_000
        self.speed = speed
        self._models = []
        self._real0 = time.ticks_us()
        self._busy = False

    # -- what the firmware sees (the same surface as the ESP32 board clock) --
    def ticks_ms(self):
        return (self._us // 1000) & _MASK

    def ticks_us(self):
        return self._us & _MASK

    @staticmethod
    def ticks_diff(a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    @staticmethod
    def ticks_add(a, d):
        return (a + d) & _MASK

    def time(self):
        """Wall-clock seconds since 1970 (what the RTC holds)."""
        return (self._epoch_us + self._us) // 1_000_000

    def set_time(self, secs):
        self._epoch_us = secs * 1_000_000 - self._us

    def delay_ms(self, ms):
        """Short blocking delay (coil pulses, card timings)."""
        self.delay_us(ms * 1000)

    def delay_us(self, us):
        # exactly `us` of virtual time: a coil pulse or a card timing is as
        # long as the firmware asked, whatever the host's sleep resolution
        if self.speed:
            time.sleep_us(us // self.speed)
        self.advance_us(us)

    async def sleep_ms(self, ms):
        """Loop pacing: yields to other tasks."""
        if self.speed:
            await asyncio.sleep_ms(ms // self.speed)
            self.sync()
        else:
            self.advance_us(ms * 1000)
            await asyncio.sleep_ms(0)

    # -- what tests and the simulator use --
    def now_us(self):
        return self._us

    def now_ms(self):
        return self._us // 1000

    def attach(self, model):
        """model.advance(t0_us, t1_us) integrates it over an interval;
        model.next_event_us(now) returns when its behaviour changes, or None."""
        self._models.append(model)

    def advance(self, ms):
        self.advance_us(ms * 1000)

    def advance_us(self, us):
        self._advance_to(self._us + us)

    def advance_until(self, ms, done):
        """Advance up to ms, one model event at a time, stopping at the
        first event after which done() is true (a sleeping CPU that the ULP
        woke). Returns the virtual ms advanced."""
        t0 = self._us
        target = t0 + ms * 1000
        while self._us < target and not done():
            nxt = target
            for m in self._models:
                e = m.next_event_us(self._us)
                if e is not None and self._us < e < nxt:
                    nxt = e
            self._advance_to(nxt)
        return (self._us - t0) // 1000

    def sync(self):
        """Catch up with the host clock (accelerated mode). Called at await
        points and by the simulator's driver, never by device models."""
        if self.speed and not self._busy:
            target = self._real_us() * self.speed
            if target > self._us:
                self._advance_to(target)

    def _real_us(self):
        # host time since start; ticks_us wraps every ~18 min, so fold it in
        now = time.ticks_us()
        self._real_acc = getattr(self, "_real_acc", 0) + time.ticks_diff(now, self._real0)
        self._real0 = now
        return self._real_acc

    def _advance_to(self, target):
        if self._busy:  # a model reading the clock while being advanced
            return
        self._busy = True
        try:
            while self._us < target:
                nxt = target
                for m in self._models:
                    e = m.next_event_us(self._us)
                    if e is not None and self._us < e < nxt:
                        nxt = e
                for m in self._models:
                    m.advance(self._us, nxt)
                self._us = nxt
                for m in self._models:
                    if hasattr(m, "at"):
                        m.at(nxt)
        finally:
            self._busy = False
