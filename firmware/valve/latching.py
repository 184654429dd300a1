# Latching solenoid valve on an H-bridge.
#
# One coil pulse of cfg["pulse_ms"] moves the plunger, which then stays put
# without power. The pulse is the only blocking part (tens of ms); the
# feedback check comes cfg["settle_ms"] after it, from the controller's step().
from valve.hbridge import HBridge


class LatchingValve(HBridge):
    def __init__(self, open_pin, close_pin, clock, cfg):
        HBridge.__init__(self, open_pin, close_pin)
        self._clock = clock
        self.pulse_ms = cfg["pulse_ms"]
        self.settle_ms = cfg["settle_ms"]
        self.busy = False
        self._until = 0

    def start(self, goal):
        """Pulse the coil toward goal; poll() says when to check the feedback."""
        c = self._clock
        self.energise(goal)
        try:
            c.delay_ms(self.pulse_ms)
        finally:
            self.release()
        self._until = c.ticks_add(c.ticks_ms(), self.settle_ms)
        self.busy = True

    def poll(self):
        """True once the actuation is over (the plunger has had time to settle)."""
        if self.busy and self._clock.ticks_diff(self._clock.ticks_ms(), self._until) < 0:
            return False
        self.busy = False
        return True

    def stop(self):
        self.release()
        self.busy = False
