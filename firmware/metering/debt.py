# The debt register (tariff "dr", docs/METERING.md "Social tariffs"): arrears
# the office adds and friendly-hours debt moved in from a negative balance,
# repaid by the tariff's recovery rule, apart from the balance.
#
# It holds its four fields; the meter holds the balance the debt is repaid
# from. weekly() changes the register itself and says what the meter takes
# from the balance; a top-up's split() changes nothing, and the meter commits
# what it computed (or rolls it back when the save fails), as it does an
# arrears entry (Meter.apply_credit, Meter.add_arrears). The meter saves and
# logs.
import timeutil


class Debt:
    def __init__(self):
        self.amount = 0        # the register: arrears and friendly-hours debt (snapshot "dbt")
        self.friendly = 0      # its part moved in from a negative balance (<= amount)
        self.arrears_seq = 0   # sequence of the last arrears the office added
        self.week_end = 0      # next weekly repayment (local Monday 00:00), 0: unset

    def split(self, balance, credit, t):
        """(balance, amount, friendly) after `credit` is added under tariff
        t's recovery rule, changing nothing: with a rule in force, a
        negative balance (friendly-hours debt) moves to the register, and
        the rule's share of the credit repays it, its friendly part first."""
        debt, friendly = self.amount, self.friendly
        if not (t.debt_share or t.debt_week):
            return balance + credit, debt, friendly
        if balance < 0:
            debt -= balance
            friendly -= balance
            balance = 0
        repay = min(debt, credit * t.debt_share // 100)
        return balance + credit - repay, debt - repay, max(0, friendly - repay)

    def weekly(self, now, tz, balance, t):
        """None before the next local Monday 00:00 (the first call only sets
        it); then the weekly repayment of tariff t, taken off the register:
        the amount the meter takes from the balance, which is from the balance
        above zero only, so recovery alone never cuts the water off."""
        if not self.week_end or now < self.week_end:
            if not self.week_end:
                self.week_end = timeutil.next_weekday(now, 0, tz)
            return None
        self.week_end = timeutil.next_weekday(now, 0, tz)
        take = min(self.amount, t.debt_week, max(0, balance))
        if take > 0:
            self.amount -= take
            self.friendly = max(0, self.friendly - take)
        return take

    def to_state(self):
        # the state's "dbt"; "friendly" is a key of its own ("dbf"): older
        # firmware (an OTA rollback) unpacks "dbt" as three and ignores "dbf"
        return [self.amount, self.arrears_seq, self.week_end]
