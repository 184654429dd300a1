# Reed contact of a pulse-output water meter, as the ULP samples it.
#
# A magnet on the meter's pointer closes the contact for the second half of
# every pulse (a 50 % duty cycle; at rest before the first pulse it is open); the contact pulls the input to ground, so
# the pad reads 0 while closed and 1 while open (external pull-up). After
# every change of state the contact chatters for bounce_us: it shows the old
# level for alternate slots of chatter_us, starting one slot after the
# change (reed switches bounce for 0.1 to a few ms, e.g. Littelfuse/Hamlin
# reed switch application notes; a slow magnet makes it longer). The
# position comes from the flow model (boards/unix/flow.py), so the contact
# turns exactly as the water flows.

_HALVES = const(2)


class ReedContact:
    def __init__(self, clock, flow, bounce_us=0, chatter_us=500):
        self.flow = flow
        self.bounce_us = bounce_us
        self.chatter_us = chatter_us
        self._half = flow.phase(_HALVES)
        self._changed_at = None       # virtual time of the last change
        self.closings = 0
        clock.attach(self)            # after the flow model: its volume is current

    def level(self, t):
        """Pad level at virtual time t (now or just after the last change)."""
        stable = 0 if self._half & 1 else 1
        c = self._changed_at
        if c is None or t - c >= self.bounce_us:
            return stable
        slot = (t - c) // self.chatter_us
        return stable ^ (slot & 1)

    def last_change_us(self):
        return self._changed_at

    def next_change_us(self, now):
        """The earliest time the level may differ from now's (the ULP
        emulator skips runs until then)."""
        c = self._changed_at
        if c is not None and now < c + self.bounce_us:
            return now            # chattering
        return self.next_event_us(now)

    def next_event_us(self, now):
        return self.flow.phase_at_us(self._half + 1, _HALVES, now)

    def advance(self, t0, t1):
        pass

    def at(self, t):
        h = self.flow.phase(_HALVES)
        if h != self._half:
            if (h - self._half) > 1:
                raise ValueError("reed model stepped over a half pulse")
            self._half = h
            self._changed_at = t
            if h & 1:
                self.closings += 1
