# What the cell of a battery meter has left, estimated by counting charge.
#
# A LiSOCl2 cell holds its voltage flat until it is nearly empty, so its
# voltage says little about what is left. The meter counts instead: each
# wake adds the charge of the sleep since the previous wake and of the wake
# itself, from the power budget's current model (docs/BATTERY.md §6), and
# the Meter saves the total in its CRC-checked state. Integers only:
# microampere-seconds (uAs).

import codes
from metering.detect import BATTERY_LOW, BATTERY_CUT

# deep sleep + ULP + LCD asleep + pull-up + divider (22.1 uA) + the card
# reader in hard power-down (5 uA, the MFRC522 datasheet's maximum)
SLEEP_UA_X10 = const(271)
WAKE_UAS = const(24_000)       # a wake: 40 mA for 600 ms
CPU_MA = const(40)             # the CPU awake, radio off (uAs per ms)
RADIO_MA = const(120)          # Wi-Fi on in a reporting window (uAs per ms on)
WINDOW_UAS = const(600_000)    # a typical window: 5 s of radio (reserve sizing only)
# a latching valve pulse, docs/VALVE.md's coil (12 V, 24 Ohm, 50 ms: 0.30 J)
# through a boost converter of 80 % from the 3.6 V cell: 0.30 / 0.8 / 3.6 As
VALVE_UAS = const(104_000)
USABLE_UAS = 19 * 3600 * 1_000_000 * 8 // 10   # 19 Ah LiSOCl2 D cell, 80 % usable
_DAY_S = const(86400)
_DAYS_MAX = const(65535)
LOW_PCT = const(10)            # low-battery warning: 10 % of the usable charge left
# The valve's reserve (docs/BATTERY.md §8): at this much left the valve
# closes, with credit or not, so that a close is always possible. Two
# closes with the driver's two retries each, 90 days of sleep, wakes and a
# daily window while the meter waits for a new cell, and 3 % of the usable
# charge against the count's own error (its currents are a model).
RESERVE_PULSES = const(6)
RESERVE_DAYS = const(90)
RESERVE_UAS = (USABLE_UAS * 3 // 100 + RESERVE_PULSES * VALVE_UAS
               + RESERVE_DAYS * (SLEEP_UA_X10 * _DAY_S // 10 + 3 * WAKE_UAS + WINDOW_UAS))
LEVEL_LOW = const(1)
LEVEL_RESERVE = const(2)
# A divider reading under this is a broken divider or ADC, not a cell: no
# cell this low could run the CPU that reads it (ESP32 brown-out, 2.43 V)
_MV_SANE = const(2000)


class CellEstimate:
    def __init__(self, battery=None, floor_mv=0):
        self._battery = battery  # the board's divider (millivolts()), or None
        self._floor_mv = floor_mv  # a cell that reads under this is at its end (0: not checked)
        self.used = 0          # uAs drawn since the cell was fitted
        self.since = 0         # when it was fitted (Unix s; 0: at the first wake)
        self.last = 0          # when the charge was last counted
        self.raised = 0        # the alarm level already logged (LEVEL_*)

    def load(self, s):
        if s is None:
            return
        if len(s) == 3:
            s = list(s) + [0]      # a state from before the alarm latch
        for v in s:
            if not isinstance(v, int) or v < 0:
                raise ValueError("cell state")
        self.used, self.since, self.last, self.raised = s

    def to_state(self):
        return [self.used, self.since, self.last, self.raised]

    def fitted(self, now):
        """A new cell: the office's `cell` op or the technician's service.cell_fitted()."""
        self.used, self.since, self.last, self.raised = 0, now, now, 0

    def level(self):
        """LEVEL_RESERVE once the valve's reserve is reached, LEVEL_LOW
        below LOW_PCT, else 0."""
        left = USABLE_UAS - self.used
        if left <= RESERVE_UAS:
            return LEVEL_RESERVE
        return LEVEL_LOW if left * 100 <= LOW_PCT * USABLE_UAS else 0

    def findings(self, log):
        """The detector's battery bits for the charge left (the Meter closes
        the valve on BATTERY_CUT). Each level's event 22 is logged once per
        cell (latched in the state), arg level << 8 | % left."""
        self._check_voltage()
        lvl = self.level()
        if lvl > self.raised:
            self.raised = lvl
            log.add(codes.EV_LOW_BATTERY, lvl << 8 | self.level_pct())
        return (BATTERY_LOW if lvl else 0) | (BATTERY_CUT if lvl == LEVEL_RESERVE else 0)

    def _check_voltage(self):
        """The count believes the cell it has counted since fitted(): a cell
        swapped for a nearly empty one (a power-on cannot tell), or drawn
        harder than the current model says, would die before the count
        reaches the reserve, the valve open. Its voltage, flat until the
        end, falls under the floor near the end: then the count is raised
        to the reserve, so the valve closes while it still can and the
        uplink reports what is left."""
        if not self._floor_mv:
            return
        mv = self.millivolts()
        if mv is None or mv < _MV_SANE or mv >= self._floor_mv:
            return
        at = USABLE_UAS - RESERVE_UAS
        if self.used < at:
            self.used = at

    def wake(self, now, radio_ms=None, valve_pulses=0, card_uas=0):
        """Count the sleep since the last count and this wake's work: the
        radio's on-time of a reporting window (None: no window; on a chip
        it includes joining the network), the valve's coil pulses and the
        card reader's looks (card/wakepoll.py's charge of them)."""
        if not self.since:
            self.since = self.last = now
        slept = now - self.last if now > self.last else 0
        radio = radio_ms * RADIO_MA if radio_ms else 0
        self.used += (slept * SLEEP_UA_X10 // 10 + WAKE_UAS + radio + valve_pulses * VALVE_UAS
                      + card_uas)
        self.last = now

    def awake(self, now, ms):
        """CPU time beyond a wake's own (the battery service mode,
        batservice.py): ms at CPU_MA. That time was not sleep, so the sleep
        count starts again at now."""
        if not self.since:
            self.since = now
        self.used += ms * CPU_MA
        if now > self.last:
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
