# Pulse sources: where counts of the flow sensor come from.
#
# The board decides which source it has. Every source offers take(): the net
# pulses seen since the previous take(), negative when water ran backwards
# (the sensor's direction output high); and mark()/resume(mark): the position
# in a count that outlives the CPU, which the Meter saves with the volume
# (None for these two, whose counts restart with the CPU; the ULP source,
# metering/ulpcount.py, has one). Neither allocates on the pulse path.
#
# CounterSource: the ESP32 PCNT unit behind machine.Counter (ESP32, S2, S3,
# C6). value(0) reads and clears atomically in the port, so no edge is lost.
#
# IrqSource: a GPIO edge interrupt, for chips without PCNT (ESP32-C3). On the
# ESP32 port Pin.irq is a soft IRQ, so the handler only counts. The count wraps
# inside the small-int range and take() works on differences, so reader and
# handler never need a lock and the handler never touches a long int.

_WRAP = const(0x1FFFFFFF)  # counts wrap here: stays a small int on every port
_HALF = const(0x10000000)


class CounterSource:
    def __init__(self, counter):
        self._counter = counter
        counter.value(0)

    def take(self):
        return self._counter.value(0)

    def mark(self):
        return None

    def resume(self, mark):
        pass


class IrqSource:
    def __init__(self, pin, trigger, ticks_us, ticks_diff, min_interval_us=0, direction_pin=None):
        self._count = 0
        self._dir = direction_pin
        self._seen = 0
        self._last = 0
        self._armed = False
        self._ticks_us = ticks_us
        self._ticks_diff = ticks_diff
        self._min_us = min_interval_us
        self.rejected = 0  # edges dropped by the debounce gate (diagnostics)
        self._handler = self._edge  # bound once: creating it in the IRQ would allocate
        pin.irq(handler=self._handler, trigger=trigger)

    def _edge(self, pin):
        t = self._ticks_us()
        # ticks_us wraps every ~18 min: after a long quiet spell the
        # difference can come out negative, which is "long ago", not bounce
        dt = self._ticks_diff(t, self._last)
        if self._min_us and self._armed and 0 <= dt < self._min_us:
            self.rejected = (self.rejected + 1) & _WRAP
            return
        self._last = t
        self._armed = True      # the first edge after start has nothing to bounce from
        d = self._dir
        if d is not None and d.value():
            self._count = (self._count - 1) & _WRAP
        else:
            self._count = (self._count + 1) & _WRAP

    def take(self):
        c = self._count
        n = (c - self._seen) & _WRAP
        self._seen = c
        if n == 0:
            self._armed = False   # quiet since the last take: the next edge is a new pulse
        return n - _WRAP - 1 if n >= _HALF else n

    def mark(self):
        return None

    def resume(self, mark):
        pass
