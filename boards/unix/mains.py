# Mains supply of the simulated board: the brown-out comparator and the
# hold-up capacitor (docs/VALVE.md "Power fail", docs/BOARDS.md).
#
# cut() takes the mains away: the comparator's output, the board's
# power_fail pin (active low), falls at once and its soft IRQ runs; the
# capacitor keeps the board up for holdup_ms, and then it is dead. The
# model measures on the board's clock how long the firmware's IRQ work
# took, so a test sees whether it fits the capacitor.
HOLDUP_MS = const(150)    # 10 mF from 12 V to 7 V: one 50 ms coil pulse + a save, with margin


class Mains:
    def __init__(self, clock, pin, holdup_ms=HOLDUP_MS):
        self.clock = clock
        self.pin = pin
        self.holdup_ms = holdup_ms
        self.on = True
        self.used_ms = None       # IRQ work after the last cut, on the board's clock

    def cut(self):
        """Mains off. True if the power-fail work fitted the hold-up."""
        c = self.clock
        t0 = c.ticks_ms()
        self.on = False
        self.pin.drive(0)
        self.used_ms = c.ticks_diff(c.ticks_ms(), t0)
        return self.used_ms <= self.holdup_ms
