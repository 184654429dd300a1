# Simulated GPIO with the machine.Pin surface the firmware uses.
#
# Outputs notify watchers (device models) on every write; inputs are driven by
# models through drive(). A matching edge hands (handler, pin) to the board's
# soft-IRQ scheduler model (boards/unix/softirq.py), as the ESP32 port's GPIO
# ISR does, so a handler runs later, or never when the queue is full.

IN = 1
OUT = 3
OPEN_DRAIN = 7
PULL_UP = 1
PULL_DOWN = 2
IRQ_FALLING = 2
IRQ_RISING = 1

_loose = None


def _loose_pins():
    # pins made outside a board (unit tests) share one scheduler, as all pins
    # of a chip do
    global _loose
    if _loose is None:
        from boards.unix.softirq import SoftIrq
        _loose = SoftIrq()
    return _loose


class SimPin:
    IN = IN
    OUT = OUT
    OPEN_DRAIN = OPEN_DRAIN
    PULL_UP = PULL_UP
    PULL_DOWN = PULL_DOWN
    IRQ_RISING = IRQ_RISING
    IRQ_FALLING = IRQ_FALLING

    def __init__(self, name, mode=IN, pull=None, value=0, softirq=None):
        self.name = name
        self._softirq = softirq
        self._mode = mode
        self._pull = pull
        self._v = 1 if pull == PULL_UP and mode == IN else value
        self._watchers = []
        self._handler = None
        self._trigger = 0
        self.writes = 0

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        self.writes += 1
        old = self._v
        self._v = v
        for w in self._watchers:
            w(self, old, v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=IRQ_RISING | IRQ_FALLING):
        # the ESP32's Pin.irq takes handler, trigger, wake: no hard IRQs
        if self._softirq is None:
            self._softirq = _loose_pins()
        self._handler = handler
        self._trigger = trigger if handler else 0

    # -- model side --
    def watch(self, fn):
        """fn(pin, old, new) after each write by the firmware."""
        self._watchers.append(fn)

    def drive(self, v):
        """A device model sets the level seen on this input."""
        v = 1 if v else 0
        old = self._v
        self._v = v
        if self._handler is not None and old != v:
            if (v and self._trigger & IRQ_RISING) or (not v and self._trigger & IRQ_FALLING):
                self._softirq.schedule(self._handler, self)

    def __repr__(self):
        return "SimPin(%s=%d)" % (self.name, self._v)
