# The credit policy (docs/METERING.md "Credit policy"): the low-credit
# levels and their events, friendly periods (no cut-off for lack of credit,
# up to a cap of what is owed), emergency credit, and the valve's cut-off
# and reopen that follow from the balance.
#
# These are methods of meter.Meter (it binds them; self is the meter). They
# write low_level and in_debt, grant emergency credit (emergency_owed, which
# a top-up repays first: Meter.apply_credit), and close or reopen the valve
# through the valve intent (valve/intent.py).
import codes
from codes import WHY_NONE, WHY_CREDIT
import timeutil


def friendly(self, now):
    """True inside a friendly period. Never on an untrusted clock: an RTC
    that lost power reads a Saturday in 2000."""
    if not self.clock_trusted:
        return False
    c = self.cfg
    _, mo, d, h, _, wd = timeutil.local_parts(now, c["tz"])
    if wd in c["friendly_days"]:
        return True
    if "%02d-%02d" % (mo, d) in c["friendly_dates"]:
        return True
    start, end = c["friendly_hours"]
    if start == end:
        return False
    return start <= h < end if start < end else (h >= start or h < end)


def owed_friendly(self):
    """What the customer owes on credit the meter extended: the negative
    balance plus the part of the debt register moved in from it (the
    office's arrears are not in it)."""
    return max(0, -self.balance) + self.debt_reg.friendly


def _may_owe(self, now):
    # no cut-off for lack of credit: friendly period, and what is owed in
    # total below the cap (a top-up moving the debt to the register under
    # a recovery rule does not reset it)
    return self.friendly(now) and self.owed_friendly() < self.cfg["friendly_debt_max"]


def _policy(self, now):
    b = self.balance
    level = 3 if b <= 0 else 2 if b < self.cfg["low2"] else 1 if b < self.cfg["low1"] else 0
    if level > self.low_level:
        for lv in range(self.low_level + 1, level + 1):
            self.log.add((codes.EV_LOW_CREDIT_1, codes.EV_LOW_CREDIT_2, codes.EV_CREDIT_EXHAUSTED)[lv - 1], b)
    self.low_level = level
    if self.indicators:
        self.indicators.show(level)
    if level == 3:
        if self.want_open and self.why_closed == WHY_NONE:
            if self._may_owe(now):
                # no cut-off in friendly hours: the water is still
                # charged, and the debt is recorded up to its cap
                if not self.in_debt and b < 0:
                    self.in_debt = True
                    self.log.add(codes.EV_FRIENDLY_DEBT, b)
                return
            self._set_valve(False, WHY_CREDIT)
    elif self.why_closed == WHY_CREDIT and not self.want_open:
        if self.cfg["reopen"] == "auto":
            self._set_valve(True, WHY_NONE)
        elif not self.awaiting_confirm:
            self.awaiting_confirm = True
            self._persist()


def request_emergency(self):
    """The user asks for emergency credit (button or card tap). Granted once
    per top-up cycle, only when credit is low, and repaid from the next top-up."""
    amount = self.cfg["emergency"]
    if amount <= 0:
        return codes.REFUSED
    if self.emergency_owed > 0:
        return codes.USED            # already granted in this cycle
    if self.balance >= self.cfg["low1"]:
        return codes.REFUSED         # only when credit is low
    if self.balance + amount <= 0:
        return codes.REFUSED         # would not bring the water back: keep it for later
    self.balance += amount
    self.emergency_owed = amount
    try:
        self.save()
    except Exception:  # noqa: BLE001
        self.balance -= amount
        self.emergency_owed = 0
        return codes.STORAGE
    self.log.add(codes.EV_EMERGENCY, amount)
    self._policy(self.clock.time())
    return codes.ACCEPTED
