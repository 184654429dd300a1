# Billing periods and tariff segments.
#
# Within a billing period the volume charge is tariff.charge(chargeable
# volume), where the chargeable volume is the period volume less the daily
# free allowance used so far (tariff "fd"; the monthly free volume "fb" is
# inside tariff.charge). A tariff change mid-period opens a new segment:
# water drawn before it keeps the old price, water after it pays the new
# one, and the block position carries on. The charge of a segment is
#     charge_new(c_now) - charge_new(c_segment_start)
# and the standing charge of a segment is standing_charge(seconds in segment).
# Each step deducts the difference between what the segment owes now and what
# it had already been charged, so any number of steps sums to the same total.
#
# The daily allowance: each allowance day (from the tariff's local reset
# hour to the next, and from each period start and tariff change) lets
# min(volume in the day, allowance) through free. The water counted at the
# first step at or after the reset time belongs to the day that ends.
# A period closes with its minimum charge: if the period's charges are
# below the tariff's "mc", the difference is charged at the period end.
_DAY_S = const(86400)


class Billing:
    def __init__(self, tariff, period_start_s, period_start_ml, tz=0):
        self.tariff = tariff
        self.tz = tz                  # local offset, for the allowance's reset hour
        self.period_start_s = period_start_s
        self.period_start_ml = period_start_ml
        self._open_allowance(0, period_start_s)
        self.fd_used = 0              # free allowance used in the period's closed days
        self._open_segment(period_start_ml, period_start_s)
        self.period_charged = 0   # everything charged in this period

    def next_reset(self, now_s):
        """The allowance's next renewal strictly after now_s."""
        t = ((now_s + self.tz) // _DAY_S) * _DAY_S - self.tz + self.tariff.day_reset_h * 3600
        return t + _DAY_S if t <= now_s else t

    def _open_allowance(self, pv, now_s):
        self.fd_ml = pv               # period volume at the allowance day's start
        self.fd_end = self.next_reset(now_s)

    def chargeable(self, pv):
        """Period volume pv less the daily free allowance used."""
        allow = self.tariff.day_free_ml
        return pv - self.fd_used - (min(pv - self.fd_ml, allow) if allow else 0)

    def _close_allowance(self, pv, now_s):
        allow = self.tariff.day_free_ml
        if allow:
            self.fd_used += min(pv - self.fd_ml, allow)
        self._open_allowance(pv, now_s)

    def _open_segment(self, ml, now_s):
        self.seg_ml = self.chargeable(ml - self.period_start_ml)  # at segment start
        self.seg_s = now_s
        self.seg_base = self.tariff.charge(self.seg_ml)
        self.seg_volume_charged = 0
        self.seg_standing_charged = 0

    def step(self, ml, now_s):
        """Charge due since the previous step, for total volume `ml` at `now_s`."""
        pv = ml - self.period_start_ml
        if self.tariff.day_free_ml and now_s >= self.fd_end:
            self._close_allowance(pv, now_s)
        owed = self.tariff.charge(self.chargeable(pv)) - self.seg_base
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
        self._close_allowance(ml - self.period_start_ml, now_s)
        self.tariff = tariff
        self._open_allowance(ml - self.period_start_ml, now_s)
        self._open_segment(ml, now_s)
        return d

    def roll_period(self, ml, now_s):
        """Close the period at now: bill it, with its minimum charge, then
        start a fresh one."""
        d = self.step(ml, now_s)
        short = self.tariff.min_charge - self.period_charged
        if short > 0:
            d += short
        self.period_start_s = now_s
        self.period_start_ml = ml
        self.period_charged = 0
        self.fd_used = 0
        self._open_allowance(0, now_s)
        self._open_segment(ml, now_s)
        return d

    def anchor(self, now_s):
        """The first trusted time: time-based charges and the allowance day
        start here."""
        self.seg_s = now_s
        self.seg_standing_charged = 0
        self.fd_end = self.next_reset(now_s)

    def period_ml(self, ml):
        return ml - self.period_start_ml

    def to_state(self):
        return [self.period_start_s, self.period_start_ml, self.seg_ml, self.seg_s,
                self.seg_volume_charged, self.seg_standing_charged, self.period_charged,
                self.fd_ml, self.fd_used, self.fd_end]

    def load_state(self, s):
        (self.period_start_s, self.period_start_ml, self.seg_ml, self.seg_s,
         self.seg_volume_charged, self.seg_standing_charged, self.period_charged) = s[:7]
        if len(s) > 7:
            self.fd_ml, self.fd_used, self.fd_end = s[7:10]   # state of firmware with allowances
        self.seg_base = self.tariff.charge(self.seg_ml)
