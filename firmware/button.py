# The customer's button (active low, pull-up): a short press confirms
# reopening the valve after a top-up, a long press asks for emergency credit.
#
# Polled from its own task rather than by IRQ: a person's press lasts tens of
# milliseconds at least, and polling debounces for free. A long press is
# reported as soon as it has lasted LONG_MS, while the button is still held,
# so the meter can answer (beep) before the customer lets go.

SHORT = const(1)
LONG = const(2)
_MIN_MS = const(50)       # shorter is contact bounce or noise
LONG_MS = const(3000)


class Button:
    def __init__(self, pin, clock):
        self._pin = pin
        self._clock = clock
        self._down = None     # ticks_ms when the press began
        self._long = False    # this press was already reported as LONG

    def poll(self):
        """SHORT when a short press ends, LONG once when a press reaches
        LONG_MS; else None."""
        pressed = self._pin.value() == 0
        now = self._clock.ticks_ms()
        if pressed:
            if self._down is None:
                self._down = now
                self._long = False
            elif not self._long and self._clock.ticks_diff(now, self._down) >= LONG_MS:
                self._long = True
                return LONG
            return None
        if self._down is None:
            return None
        held = self._clock.ticks_diff(now, self._down)
        self._down = None
        if self._long:
            return None
        return SHORT if held >= _MIN_MS else None
