# Valve models behind an H-bridge, with limit-switch feedback and fault
# injection, for the unix board.
#
# LatchingValveModel: a coil pulse of at least min_pulse_ms moves the plunger
# to the coil's end after travel_ms. MotorValveModel: a ball valve whose motor
# turns while one bridge input is high, travel_ms from end to end, stalling
# against the end stops. Water passes until the valve is physically seated
# closed (flow.py asks passes()). Both bridge inputs high at once is a
# shoot-through: counted, and it moves nothing.
#
# Limit switches (optional SimPins) are active at fb_active (0: switch to
# ground, pull-up): the open switch only when fully open, the closed switch
# only when seated. Faults a test can inject:
#   jam(pos)            stuck at pos (OPEN or CLOSED) until unjam()
#   break_feedback()    both switches read inactive (cut wire) until repair_feedback()
#   short_feedback()    both switches read active
#   move_by_hand(pos)   someone turns the valve to pos, no command

CLOSED = const(0)
OPEN = const(1)
MOVING = const(2)


class _Switches:
    def __init__(self, open_pin, closed_pin, active):
        self.open_pin = open_pin
        self.closed_pin = closed_pin
        self.active = active
        self.fault = None           # None, "broken" or "short"
        self._shown = -1

    def show(self, state):
        o = state == OPEN
        c = state == CLOSED
        if self.fault == "broken":
            o = c = False
        elif self.fault == "short":
            o = c = True
        a = self.active
        if self.open_pin is not None:
            self.open_pin.drive(a if o else 1 - a)
        if self.closed_pin is not None:
            self.closed_pin.drive(a if c else 1 - a)


class _ValveModel:
    """What both models share: pins, shoot-through watch, faults, feedback."""

    def __init__(self, clock, open_pin, close_pin, fb_open=None, fb_closed=None, fb_active=0):
        self.clock = clock
        self._pins = {"open": open_pin, "close": close_pin}
        self.switches = _Switches(fb_open, fb_closed, fb_active)
        self.shoot_through = 0
        self.moves = 0              # completed travels to an end
        self.rises = {"open": [], "close": []}   # virtual us of each bridge-input rise
        self.closed_at_us = None    # last time the valve seated closed
        self.stuck = None
        open_pin.watch(self._edge("open"))
        close_pin.watch(self._edge("close"))
        clock.attach(self)

    def _edge(self, side):
        def fn(pin, old, new):
            now = self.clock.now_us()
            if new and not old:
                self.rises[side].append(now)
                if self._pins["open"].value() and self._pins["close"].value():
                    self.shoot_through += 1
            self._input(side, old, new, now)
        return fn

    # -- fault injection --
    def jam(self, pos):
        self.stuck = pos
        self._force(pos)

    def unjam(self):
        self.stuck = None

    def break_feedback(self):
        self.switches.fault = "broken"
        self.switches.show(self.state)

    def short_feedback(self):
        self.switches.fault = "short"
        self.switches.show(self.state)

    def repair_feedback(self):
        self.switches.fault = None
        self.switches.show(self.state)

    def move_by_hand(self, pos):
        self._force(pos)

    def advance(self, t0, t1):
        pass


class LatchingValveModel(_ValveModel):
    def __init__(self, clock, open_pin, close_pin, travel_ms=80, min_pulse_ms=20, start=CLOSED,
                 fb_open=None, fb_closed=None, fb_active=0):
        self.state = start
        self.target = start
        self.travel_us = travel_ms * 1000
        self.min_pulse_us = min_pulse_ms * 1000
        self._end = None
        self._rise = {}
        self.pulses = 0             # coil pulses long enough to act
        _ValveModel.__init__(self, clock, open_pin, close_pin, fb_open, fb_closed, fb_active)
        self.switches.show(self.state)

    def _input(self, side, old, new, now):
        if new and not old:
            self._rise[side] = now
        elif old and not new and side in self._rise:
            if now - self._rise.pop(side) >= self.min_pulse_us:
                self.pulses += 1
                if not (self._pins["open"].value() or self._pins["close"].value()):
                    self._move(OPEN if side == "open" else CLOSED, now)

    def _move(self, target, now):
        if self.stuck is not None:
            return
        if self.state == target and self._end is None:
            return
        self.target = target
        self.state = MOVING
        self._end = now + self.travel_us
        self.switches.show(MOVING)

    def _force(self, pos):
        self._end = None
        self.state = self.target = pos
        if pos == CLOSED:
            self.closed_at_us = self.clock.now_us()
        self.switches.show(pos)

    def passes(self):
        return self.state != CLOSED

    def next_event_us(self, now):
        return self._end

    def at(self, t):
        if self._end is not None and t >= self._end:
            self._end = None
            self.state = self.target
            self.moves += 1
            if self.state == CLOSED:
                self.closed_at_us = t
            self.switches.show(self.state)


class MotorValveModel(_ValveModel):
    def __init__(self, clock, open_pin, close_pin, travel_ms=5000, start=CLOSED,
                 fb_open=None, fb_closed=None, fb_active=0):
        self.travel_us = travel_ms * 1000
        self.pos_us = self.travel_us if start == OPEN else 0   # 0 = seated closed
        self.dir = 0
        self.stall_us = 0           # time driven against an end stop
        self._t = clock.now_us()
        _ValveModel.__init__(self, clock, open_pin, close_pin, fb_open, fb_closed, fb_active)
        self.switches.show(self.state)

    @property
    def state(self):
        if self.pos_us <= 0:
            return CLOSED
        if self.pos_us >= self.travel_us:
            return OPEN
        return MOVING

    def _update(self, now):
        dt = now - self._t
        self._t = now
        if dt <= 0 or not self.dir:
            return
        before = self.state
        if self.stuck is not None:
            self.stall_us += dt
            return
        p = self.pos_us + self.dir * dt
        if p < 0:
            self.stall_us += -p
            p = 0
        elif p > self.travel_us:
            self.stall_us += p - self.travel_us
            p = self.travel_us
        self.pos_us = p
        s = self.state
        if s != before:
            if s != MOVING:
                self.moves += 1
            if s == CLOSED:
                self.closed_at_us = now
            self.switches.show(s)

    def _input(self, side, old, new, now):
        self._update(now)
        o = self._pins["open"].value()
        c = self._pins["close"].value()
        self.dir = 0 if o == c else (1 if o else -1)

    def _force(self, pos):
        self._update(self.clock.now_us())
        self.pos_us = self.travel_us if pos == OPEN else 0 if pos == CLOSED else self.travel_us // 2
        if pos == CLOSED:
            self.closed_at_us = self.clock.now_us()
        self.switches.show(self.state)

    def passes(self):
        return self.pos_us > 0 or (self.dir > 0 and self.stuck is None)

    def next_event_us(self, now):
        if self.stuck is not None or not self.dir:
            return None
        if self.dir > 0 and self.pos_us < self.travel_us:
            return self._t + self.travel_us - self.pos_us
        if self.dir < 0 and self.pos_us > 0:
            return self._t + self.pos_us
        return None

    def at(self, t):
        self._update(t)
