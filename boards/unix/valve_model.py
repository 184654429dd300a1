# Latching solenoid valve model behind an H-bridge.
#
# A coil pulse of at least min_pulse_ms moves the plunger to the coil's end
# after travel_ms. Water passes until the valve is physically seated closed.
# Both bridge inputs high at once is a shoot-through: counted, never allowed.

CLOSED = const(0)
OPEN = const(1)
MOVING = const(2)


class LatchingValveModel:
    def __init__(self, clock, open_pin, close_pin, travel_ms=80, min_pulse_ms=20, start=CLOSED):
        self.clock = clock
        self.state = start
        self.target = start
        self.travel_us = travel_ms * 1000
        self.min_pulse_us = min_pulse_ms * 1000
        self._end = None
        self._rise = {}
        self.shoot_through = 0
        self.moves = 0
        self.closed_at_us = None
        self._pins = {"open": open_pin, "close": close_pin}
        open_pin.watch(self._edge("open"))
        close_pin.watch(self._edge("close"))
        clock.attach(self)

    def _edge(self, side):
        def fn(pin, old, new):
            self.clock.sync()
            now = self.clock.now_us()
            if new and not old:
                if self._pins["open"].value() and self._pins["close"].value():
                    self.shoot_through += 1
                self._rise[side] = now
            elif old and not new and side in self._rise:
                if now - self._rise.pop(side) >= self.min_pulse_us:
                    self._move(OPEN if side == "open" else CLOSED, now)
        return fn

    def _move(self, target, now):
        if self.state == target and self._end is None:
            return
        self.target = target
        self.state = MOVING
        self._end = now + self.travel_us

    def passes(self):
        return self.state != CLOSED

    def next_event_us(self, now):
        return self._end

    def advance(self, t0, t1):
        pass

    def at(self, t):
        if self._end is not None and t >= self._end:
            self._end = None
            self.state = self.target
            self.moves += 1
            if self.state == CLOSED:
                self.closed_at_us = t
