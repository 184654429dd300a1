# The meter: the one owner of balance, volume, tariff, valve intent and events.
#
# Everything else asks it to act: the loop calls poll(); cards and MQTT call
# apply_credit(), stage_tariff(), request_valve(); the REPL reads snapshot().
# State is saved at once on every credit, tariff and valve change, and while
# water flows at most every `save_l` litres or `save_s` seconds.
import codes
import ledger
import timeutil
from metering import tariff as tariffs
from metering.billing import Billing
from metering.volume import Volume

OPEN = const(1)
CLOSED = const(0)

# why the valve is closed (or 0 if it should be open)
WHY_NONE = const(0)
WHY_CREDIT = const(1)
WHY_COMMAND = const(2)
WHY_FAULT = const(3)


class Meter:
    def __init__(self, cfg, clock, store, log, pulses, valve=None, indicators=None):
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.log = log
        self.pulses = pulses
        self.valve = valve
        self.indicators = indicators
        now = clock.time()
        code, t = tariffs.parse(cfg["tariff"])
        if t is None:
            raise ValueError("configured tariff invalid: %s" % codes.result_name(code))
        self.volume = Volume(cfg["k"][0], cfg["k"][1])
        self.billing = Billing(t, now, 0)
        self.period_end = timeutil.next_month_day(now, cfg["period_day"], cfg["tz"])
        self.staged = None            # Tariff waiting for its activation time
        self.balance = 0
        self.ledger = ledger.Ledger()
        self.emergency_owed = 0       # emergency credit to repay from the next top-up
        self.want_open = False        # valve intent
        self.why_closed = WHY_CREDIT
        self.awaiting_confirm = False  # credit back, waiting for a tap to reopen
        self.low_level = 0            # 0: fine, 1: below low1, 2: below low2, 3: exhausted
        self.flow_mlph = 0            # measured flow, mL/h
        self._last_save_ml = 0
        self._last_save_t = now
        self._last_poll_ms = clock.ticks_ms()
        self._rate_ml = 0
        self._rate_ms = 0

    # ---------------- state ----------------
    def restore(self):
        """Load the newest good state; returns True if one was found."""
        s = self.store.load()
        for slot in self.store.corrupt:
            self.log.add(codes.EV_STATE_CORRUPT, slot)
        if s is None:
            return False
        self.balance = s["bal"]
        self.volume = Volume.from_state(s["vol"])
        _, t = tariffs.parse(s["tar"])
        self.billing = Billing(t, 0, 0)
        self.billing.load_state(s["bill"])
        self.period_end = s["pend"]
        self.staged = tariffs.parse(s["stg"])[1] if s.get("stg") else None
        self.ledger = ledger.Ledger(s["led"])
        self.emergency_owed = s["emo"]
        self.want_open = bool(s["vw"])
        self.why_closed = s["vwhy"]
        self.awaiting_confirm = bool(s["vcf"])
        self.low_level = s["low"]
        self._last_save_ml = self.volume.ml()
        self.log.add(codes.EV_STATE_RESTORED, self.store.generation)
        return True

    def save(self):
        s = {
            "bal": self.balance,
            "vol": self.volume.to_state(),
            "tar": self.billing.tariff.to_dict(),
            "bill": self.billing.to_state(),
            "pend": self.period_end,
            "stg": self.staged.to_dict() if self.staged else None,
            "led": self.ledger.to_state(),
            "emo": self.emergency_owed,
            "vw": 1 if self.want_open else 0,
            "vwhy": self.why_closed,
            "vcf": 1 if self.awaiting_confirm else 0,
            "low": self.low_level,
        }
        self.store.save(s)
        self._last_save_ml = self.volume.ml()
        self._last_save_t = self.clock.time()

    # ---------------- the loop ----------------
    def poll(self):
        """Fold new pulses into volume and money, then apply the credit policy."""
        n = self.pulses.take()
        if n:
            self.volume.add(n)
        now = self.clock.time()
        ml = self.volume.ml()
        self._measure_rate(ml)
        if self.staged is not None and now >= self.staged.activate_at:
            self.balance -= self.billing.change_tariff(self.staged, ml, now)
            self.log.add(codes.EV_TARIFF, self.staged.version)
            self.staged = None
            self.save()
        if now >= self.period_end:
            self.balance -= self.billing.roll_period(ml, self.period_end)
            self.period_end = timeutil.next_month_day(now, self.cfg["period_day"], self.cfg["tz"])
            self.log.add(codes.EV_PERIOD_ROLLOVER, 0)
            self.save()
        self.balance -= self.billing.step(ml, now)
        self._policy(now)
        if (ml - self._last_save_ml >= self.cfg["save_l"] * 1000
                or (ml != self._last_save_ml and now - self._last_save_t >= self.cfg["save_s"])):
            self.save()

    def _measure_rate(self, ml):
        # Flow over a window of about 60 s, in mL/h, for display/telemetry.
        t = self.clock.ticks_ms()
        dt = self.clock.ticks_diff(t, self._rate_ms)
        if dt >= 60_000:
            self.flow_mlph = (ml - self._rate_ml) * 3_600_000 // dt
            self._rate_ml = ml
            self._rate_ms = t

    # ---------------- credit policy ----------------
    def friendly(self, now):
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
                if self.friendly(now):
                    return  # no cut-off in friendly hours; debt accrues
                self._set_valve(False, WHY_CREDIT)
        elif self.why_closed == WHY_CREDIT and not self.want_open:
            if self.cfg["reopen"] == "auto":
                self._set_valve(True, WHY_NONE)
            elif not self.awaiting_confirm:
                self.awaiting_confirm = True
                self.save()

    def confirm(self):
        """The user tapped the card or pressed the button: reopen if credit allows."""
        if self.awaiting_confirm and self.balance > 0:
            self.awaiting_confirm = False
            self._set_valve(True, WHY_NONE)
            return codes.ACCEPTED
        return codes.REFUSED

    def _set_valve(self, want_open, why):
        self.want_open = want_open
        self.why_closed = why
        if self.valve is not None:
            if want_open:
                self.valve.open()
            else:
                self.valve.close()
        self.log.add(codes.EV_VALVE_OPEN if want_open else codes.EV_VALVE_CLOSED, why)
        self.save()

    def reconcile_valve(self):
        """At boot: drive the valve to the stored intent (the latching valve
        may have been moved, or a pulse cut short, while the power was off)."""
        if self.valve is None:
            return
        if self.want_open and self.balance <= 0 and not self.friendly(self.clock.time()):
            self.want_open = False
            self.why_closed = WHY_CREDIT
        if self.want_open:
            self.valve.open()
        else:
            self.valve.close()

    # ---------------- requests from cards, MQTT, the REPL ----------------
    def apply_credit(self, source, account, seq, amount):
        """The one entry point for every credit. Durable before it says ACCEPTED."""
        if not (isinstance(amount, int) and isinstance(seq, int) and isinstance(account, int)):
            return self._reject(codes.FORMAT)
        if amount <= 0 or seq < 0 or account < 0:
            return self._reject(codes.RANGE)
        code = self.ledger.check(source, account, seq)
        if code == codes.USED:
            return code  # acknowledged again, not applied again
        if code != codes.ACCEPTED:
            return self._reject(code)
        if amount > self.cfg["max_topup"] or self.balance + amount > self.cfg["max_balance"]:
            return self._reject(codes.OVER_LIMIT)
        before = (self.balance, self.emergency_owed, self.ledger.copy())
        self.balance += amount - self.emergency_owed
        self.emergency_owed = 0
        self.ledger.record(source, account, seq)
        try:
            self.save()
        except OSError:
            # Not durable, so not applied: roll back and let the sender retry.
            self.balance, self.emergency_owed, self.ledger = before
            return self._reject(codes.STORAGE)
        self.log.add(codes.EV_CREDIT, amount)
        self._policy(self.clock.time())
        return codes.ACCEPTED

    def _reject(self, code):
        self.log.add(codes.EV_CREDIT_REJECTED, code)
        return code

    def stage_tariff(self, d):
        """Accept a tariff in wire form; it takes effect at its activation time."""
        code, t = tariffs.parse(d)
        if t is None:
            self.log.add(codes.EV_TARIFF_REJECTED, code)
            return code
        current = self.staged.version if self.staged else self.billing.tariff.version
        if t.version == current:
            return codes.USED
        if t.version < current:
            self.log.add(codes.EV_TARIFF_REJECTED, codes.OLD)
            return codes.OLD
        self.staged = t
        self.save()
        self.poll()  # activation time may already have passed
        return codes.ACCEPTED

    # ---------------- views ----------------
    def snapshot(self):
        return {
            "id": self.cfg["meter_id"],
            "t": self.clock.time(),
            "ml": self.volume.ml(),
            "bal": self.balance,
            "flow": self.flow_mlph,
            "valve": 1 if self.want_open else 0,
            "why": self.why_closed,
            "low": self.low_level,
            "tv": self.billing.tariff.version,
            "evs": self.log.seq,
        }
