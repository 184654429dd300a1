# Latching solenoid valve on an H-bridge.
#
# Two inputs of the bridge: one drives the open coil, the other the close
# coil. Driving both at once shorts the supply through the bridge, so every
# pulse goes through _pulse(), which lowers both sides before it raises one:
# shoot-through cannot happen by construction.

POSITION_UNKNOWN = const(-1)
POSITION_CLOSED = const(0)
POSITION_OPEN = const(1)


class LatchingValve:
    def __init__(self, open_pin, close_pin, clock, pulse_ms=50):
        self._open = open_pin
        self._close = close_pin
        self._clock = clock
        self.pulse_ms = pulse_ms
        self.position = POSITION_UNKNOWN
        open_pin.value(0)
        close_pin.value(0)

    def _pulse(self, pin):
        self._open.value(0)
        self._close.value(0)
        pin.value(1)
        try:
            self._clock.delay_ms(self.pulse_ms)
        finally:
            pin.value(0)

    def open(self):
        self._pulse(self._open)
        self.position = POSITION_OPEN
        return True

    def close(self):
        self._pulse(self._close)
        self.position = POSITION_CLOSED
        return True
