# Flow sensor model: a pulse-output meter (reed switch, Hall or turbine).
#
# Water passes at the commanded rate while the valve model lets it through.
# The delivered volume is integrated exactly in (mL/h)*us, and the sensor
# emits floor(litres * K) pulses in total, K = k_num/k_den pulses per litre.
# Pulses reach the firmware two ways, as on the boards: a Counter (PCNT) and
# an input pin whose IRQ handler fires per rising edge, at the pulse's own
# virtual time. A reversed flag raises the direction pin (reverse flow).

_US_PER_H_ML_PER_L = const(3_600_000_000_000)   # 3.6e9 us/h * 1000 mL/L


class SimCounter:
    """machine.Counter surface: value([v]) gets, or sets and returns the old value."""
    RISING = 1
    FALLING = 2
    UP = 1
    DOWN = -1

    def __init__(self):
        self._n = 0
        self.reads = 0

    def value(self, v=None):
        self.reads += 1
        old = self._n
        if v is not None:
            self._n = v
        return old


class FlowSensor:
    def __init__(self, clock, valve, k_num=1, k_den=1, pin=None, direction_pin=None, bounce=0):
        self.clock = clock
        self.valve = valve
        self.k_num = k_num
        self.k_den = k_den
        self.rate_mlph = 0
        self.counter = SimCounter()
        self.pin = pin
        self.direction_pin = direction_pin
        self.bounce = bounce          # extra edges per pulse (reed-switch chatter)
        self.reversed = False
        self._acc = 0                 # integral of rate over time, (mL/h)*us
        self._stop_at = None          # _acc at which a pour() ends
        self.emitted = 0              # pulses produced in total
        self.reverse_pulses = 0       # of which while running backwards
        clock.attach(self)

    def set_rate_lph(self, lph):
        self.rate_mlph = int(lph * 1000)
        self._stop_at = None

    def pour(self, ml, lph):
        """Run at lph until exactly ml more have passed (a technician filling
        a calibrated measure), then stop, at that instant of virtual time."""
        self.set_rate_lph(lph)
        self._stop_at = self._acc + ml * 3_600_000_000

    def set_reversed(self, rev):
        self.reversed = rev
        if self.direction_pin is not None:
            self.direction_pin.drive(1 if rev else 0)

    def delivered_ml(self):
        return self._acc // 3_600_000_000

    def phase(self, steps):
        """How far the sensor has turned, in 1/steps of a pulse (a reed
        contact model reads its magnet's position from this)."""
        return (self._acc * self.k_num * steps) // (self.k_den * _US_PER_H_ML_PER_L)

    def phase_at_us(self, p, steps, now):
        """When phase(steps) reaches p at the present rate, or None if still."""
        if not self._flowing():
            return None
        need = -((-p * self.k_den * _US_PER_H_ML_PER_L) // (self.k_num * steps))
        return now + max(1, -((-(need - self._acc)) // self.rate_mlph))

    def _flowing(self):
        return self.rate_mlph > 0 and self.valve.passes()

    def _irq_wired(self):
        return self.pin is not None and self.pin._handler is not None

    def next_event_us(self, now):
        if not self._flowing():
            return None
        nxt = None
        if self._stop_at is not None:
            nxt = now + max(1, -((-(self._stop_at - self._acc)) // self.rate_mlph))
        if self._irq_wired():
            need = -((-(self.emitted + 1) * self.k_den * _US_PER_H_ML_PER_L) // self.k_num)
            t = now + max(1, -((-(need - self._acc)) // self.rate_mlph))
            nxt = t if nxt is None or t < nxt else nxt
        return nxt

    def advance(self, t0, t1):
        if self._flowing():
            self._acc += self.rate_mlph * (t1 - t0)
            if self._stop_at is not None and self._acc >= self._stop_at:
                self._acc = self._stop_at   # the measure is full: the tap closes
                self.rate_mlph = 0
                self._stop_at = None

    def at(self, t):
        total = (self._acc * self.k_num) // (self.k_den * _US_PER_H_ML_PER_L)
        n = total - self.emitted
        if n <= 0:
            return
        self.emitted = total
        self.counter._n += -n if self.reversed else n
        if self.reversed:
            self.reverse_pulses += n
        if self._irq_wired():
            for _ in range(n):
                for _ in range(1 + self.bounce):
                    self.pin.drive(1)
                    self.pin.drive(0)
