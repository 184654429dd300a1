# Billing periods and tariff segments.
#
# Within a billing period the volume charge is tariff.charge(period_volume).
# A tariff change mid-period opens a new segment: water drawn before it keeps
# the old price, water after it pays the new one, and the block position
# (the period volume) carries on. The charge of a segment is
#     charge_new(v_now) - charge_new(v_segment_start)
# and the standing charge of a segment is standing_charge(seconds in segment).
# Each step deducts the difference between what the segment owes now and what
# it had already been charged, so any number of steps sums to the same total.


class Billing:
    def __init__(self, tariff, period_start_s, period_start_ml):
        self.tariff = tariff
        self.period_start_s = period_start_s
        self.period_start_ml = period_start_ml
        self._open_segment(period_start_ml, period_start_s)
        self.period_charged = 0   # everything charged in this period

    def _open_segment(self, ml, now_s):
        self.seg_ml = ml - self.period_start_ml  # period volume at segment start
        self.seg_s = now_s
        self.seg_base = self.tariff.charge(self.seg_ml)
        self.seg_volume_charged = 0
        self.seg_standing_charged = 0

    def step(self, ml, now_s):
        """Charge due since the previous step, for total volume `ml` at `now_s`."""
        pv = ml - self.period_start_ml
        owed = self.tariff.charge(pv) - self.seg_base
        d = owed - self.seg_volume_charged
        self.seg_volume_charged = owed
        if now_s > self.seg_s:
            st = self.tariff.standing_charge(now_s - self.seg_s)
            if st > self.seg_standing_charged:   # a clock set back refunds nothing
                d += st - self.seg_standing_charged
                self.seg_standing_charged = st
        self.period_charged += d
        return d

    def change_tariff(self, tariff, ml, now_s):
        """Bill up to now under the old tariff, then switch. Returns the charge due."""
        d = self.step(ml, now_s)
        self.tariff = tariff
        self._open_segment(ml, now_s)
        return d

    def roll_period(self, ml, now_s):
        """Close the period at now: bill it, then start a fresh one."""
        d = self.step(ml, now_s)
        self.period_start_s = now_s
        self.period_start_ml = ml
        self.period_charged = 0
        self._open_segment(ml, now_s)
        return d

    def period_ml(self, ml):
        return ml - self.period_start_ml

    def to_state(self):
        return [self.period_start_s, self.period_start_ml, self.seg_ml, self.seg_s,
                self.seg_volume_charged, self.seg_standing_charged, self.period_charged]

    def load_state(self, s):
        (self.period_start_s, self.period_start_ml, self.seg_ml, self.seg_s,
         self.seg_volume_charged, self.seg_standing_charged, self.period_charged) = s
        self.seg_base = self.tariff.charge(self.seg_ml)
