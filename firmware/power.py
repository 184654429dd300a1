# What the cell of a battery meter has left, estimated by counting charge.
#
# A LiSOCl2 cell holds its voltage flat until it is nearly empty, so its
# voltage says little about what is left. The meter counts instead: each
# wake adds the charge of the sleep since the previous wake and of the wake
# itself, from the power budget's current model (docs/BATTERY.md §6), and
# the Meter saves the total in its CRC-checked state. Integers only:
# microampere-seconds (uAs).

SLEEP_UA_X10 = const(221)      # deep sleep + ULP + LCD asleep + pull-up + divider: 22.1 uA
WAKE_UAS = const(24_000)       # a wake: 40 mA for 600 ms
RADIO_MA = const(120)          # Wi-Fi on in a reporting window (uAs per ms on)
VALVE_UAS = const(15_000)      # a latching valve pulse: 300 mA for 50 ms
USABLE_UAS = 19 * 3600 * 1_000_000 * 8 // 10   # 19 Ah LiSOCl2 D cell, 80 % usable
_DAY_S = const(86400)
_DAYS_MAX = const(65535)


class CellEstimate:
    def __init__(self, battery=None):
        self._battery = battery  # the board's divider (millivolts()), or None
        self.used = 0          # uAs drawn since the cell was fitted
        self.since = 0         # when it was fitted (Unix s; 0: at the first wake)
        self.last = 0          # when the charge was last counted

    def load(self, s):
        if s is None:
            return
        used, since, last = s
        if used < 0 or since < 0 or last < 0:
            raise ValueError("cell state")
        self.used, self.since, self.last = used, since, last

    def to_state(self):
        return [self.used, self.since, self.last]

    def wake(self, now, radio_ms=None, valve_pulses=0):
        """Count the sleep since the last count and this wake's work: the
        radio's on-time of a reporting window (None: no window; on a chip
        it includes joining the network), and the valve's coil pulses."""
        if not self.since:
            self.since = self.last = now
        slept = now - self.last if now > self.last else 0
        radio = radio_ms * RADIO_MA if radio_ms else 0
        self.used += slept * SLEEP_UA_X10 // 10 + WAKE_UAS + radio + valve_pulses * VALVE_UAS
        self.last = now

    def millivolts(self):
        """The cell voltage now, or None (no divider, or a failed read)."""
        if self._battery is None:
            return None
        try:
            return self._battery.millivolts()
        except (OSError, ValueError):
            return None

    def level_pct(self):
        left = USABLE_UAS - self.used
        return 0 if left <= 0 else left * 100 // USABLE_UAS

    def days_left(self, now):
        """At the mean rate since the cell was fitted (at least the sleep
        rate: the first days have seen too little to say more)."""
        left = USABLE_UAS - self.used
        if left <= 0:
            return 0
        span = now - self.since
        per_day = self.used * _DAY_S // span if span > _DAY_S else 0
        floor = SLEEP_UA_X10 * _DAY_S // 10
        per_day = per_day if per_day > floor else floor
        d = left // per_day
        return _DAYS_MAX if d > _DAYS_MAX else d
