# Motorised ball valve on an H-bridge: the motor runs until the limit switch
# of the end it is driving to closes, or a timeout expires.
#
# The limit switch stops the motor from its pin IRQ (no waiting for the next
# meter poll, so the motor does not stall against the end stop); poll() checks
# the switch again in case an edge was missed, and enforces the timeout. An
# end with no switch is driven for cfg["run_ms"] (actuators with internal end
# switches cut their own power). Reversing passes through cfg["coast_ms"] off.
from valve.hbridge import HBridge


class MotorValve(HBridge):
    def __init__(self, open_pin, close_pin, clock, cfg, feedback):
        HBridge.__init__(self, open_pin, close_pin)
        self._clock = clock
        self._fb = feedback
        self.timeout_ms = cfg["timeout_ms"]
        self.run_ms = cfg["run_ms"]
        self.coast_ms = cfg["coast_ms"]
        self.busy = False
        self.timed_out = False
        self._goal = -1
        self._until = 0
        self._irq = self._on_limit    # bound once: the IRQ handler must not allocate
        for p in (feedback.open_pin, feedback.closed_pin):
            if p is not None:
                p.irq(handler=self._irq, trigger=p.IRQ_RISING | p.IRQ_FALLING)

    def _on_limit(self, pin):
        if self.driving and self._fb.at(self._goal):
            self.release()

    def start(self, goal):
        c = self._clock
        if self.driving:
            self.release()
            c.delay_ms(self.coast_ms)
        self._goal = goal
        self.timed_out = False
        self.busy = True
        has = self._fb.has(goal)
        if has and self._fb.at(goal):
            return                    # already at that end
        self._until = c.ticks_add(c.ticks_ms(), self.timeout_ms if has else self.run_ms)
        self.energise(goal)

    def poll(self):
        """True once the motor has stopped: at the limit, or on the timeout."""
        if not self.busy:
            return True
        if self.driving and self._fb.at(self._goal):
            self.release()
        if self.driving:
            if self._clock.ticks_diff(self._clock.ticks_ms(), self._until) < 0:
                return False
            self.release()
            self.timed_out = self._fb.has(self._goal)
        self.busy = False
        return True

    def stop(self):
        self.release()
        self.busy = False
