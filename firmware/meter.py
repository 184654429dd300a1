# The meter: the one owner of balance, volume, tariff, valve intent and events.
#
# Everything else asks it to act: the loop calls poll(); cards and MQTT call
# apply_credit(), stage_tariff(), request_valve(); the REPL reads snapshot().
# State is saved at once on every credit, tariff and valve change, and while
# water flows at most every `save_l` litres or `save_s` seconds.
#
# This module is the loop (pulses into volume and money, periods, days,
# tariff activation, the clock and its floor), the saves, settings and the
# views. The rest of Meter's methods are written by concern in modules of
# their own and bound into the class below, each naming the fields it
# writes: credit.py (credits in), creditpolicy.py (levels, friendly periods,
# emergency credit, cut-off), valve/intent.py (the valve intent), counters.py
# (command counter, office sequences, firmware floor). The debt register is
# an object (metering/debt.py); the state record's keys are
# storage/record.py.
import codes
import config
import counters
import credit
import creditpolicy
# the reasons, also imported from here by boards, tests and benches
from codes import (WHY_NONE, WHY_CREDIT, WHY_COMMAND, WHY_LEAK, WHY_BURST, WHY_TAMPER,  # noqa: F401
                   WHY_BATTERY, WHY_SENSOR, WHY_OVERRIDE, WHY_POWER)
import ledger
import timeutil
from metering import detect
from metering import tariff as tariffs
from metering.billing import Billing
from metering.debt import Debt
from metering.volume import Volume
from storage import history as hist
from storage import record
from storage.record import IDENTITY
from valve import intent

# Earliest believable wall time (2025-01-01). An ESP32 whose RTC lost power
# restarts in 2000: until the time is set, no standing charge, period
# rollover or tariff activation is based on it.
TIME_MIN = const(1735689600)
FLOW_WINDOW_S = const(60)     # the flow rate is the mean over this long (docs/PROTOCOL.md §3.3)
TARIFF_STEP = const(1000)     # a tariff version rises by at most this much at a time
_PERIOD_MAX_S = const(2_678_400)   # 31 days: the longest billing period
# a clock jump closes at most this many missed periods at one poll, each with
# its standing and minimum charge (a year; the head-end bills the rest)
_CATCHUP_MAX = const(12)

# snapshot()["sf"], state flags: what a head-end must know before trusting the figures
SF_CLOCK_UNTRUSTED = const(1)  # clock unset or behind the time floor: no friendly hours
SF_STATE_ROLLBACK = const(2)   # a state copy was missing or rolled back at this boot
SF_STATE_LOST = const(4)       # both copies lost: card credits wait for a signed floor
SF_STORAGE = const(8)          # saves failing: volume since the last good save is in RAM only


class Meter:
    def __init__(self, cfg, clock, store, log, pulses, valve=None, indicators=None, detector=None,
                 history_dir=None):
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.log = log
        self.pulses = pulses
        self.cell = None          # battery boards: power.CellEstimate, set before restore()
        self.window = None        # battery boards: window.Schedule, set before restore()
        self.valve = valve
        self.indicators = indicators
        self.detector = detector
        self.persist_config = None    # set by main: writes cfg to config.json
        now = clock.time()
        code, t = tariffs.parse(cfg["tariff"])
        if t is None:
            raise ValueError("configured tariff invalid: %s" % codes.result_name(code))
        self.volume = Volume(cfg["k"][0], cfg["k"][1])
        self.reverse = Volume(cfg["k"][0], cfg["k"][1])   # backflow: counted, never billed or credited
        self._reversing = False
        self.in_debt = False          # balance ran out inside a friendly period
        self.billing = Billing(t, now, 0, cfg["tz"])
        self.period_end = timeutil.next_month_day(now, cfg["period_day"], cfg["tz"])
        self.staged = None            # Tariff waiting for its activation time
        self.office = None            # office public keys (attach_office)
        self.office_seq = {}          # "f" fleet, "c" card sequences, "kr" retired below
        self.balance = 0
        self.charged = 0              # every charge deducted so far (the money register)
        self.ledger = ledger.Ledger()
        self.emergency_owed = 0       # emergency credit to repay from the next top-up
        self.debt_reg = Debt()        # the debt register: arrears and friendly-hours debt (tariff "dr")
        self.want_open = False        # valve intent
        self.why_closed = WHY_CREDIT
        self.awaiting_confirm = False  # credit back, waiting for a tap to reopen
        self.low_level = 0            # 0: fine, 1: below low1, 2: below low2, 3: exhausted
        self.flow_mlph = 0            # measured flow, mL/h
        self._last_save_ml = 0
        self._last_save_t = now
        self._rate_ml = 0
        self._rate_ms = 0
        self._v_ml = 0                # valve exercise: volume and time of the last flow seen
        self._v_still = now
        self.cmd_counter = 0          # highest MQTT command counter accepted (anti-replay)
        self.time_floor = 0           # last trusted wall time: the clock never runs behind it
        self.clock_trusted = now >= TIME_MIN
        self.state_lost = False       # set at restore on a total loss, cleared by a signed floor
        self.rollback = 0             # STATE_COPY_MISSING / STATE_GEN_GAP seen at this boot
        self.fw_floor = 0             # highest firmware version validated here: only goes up (docs/OTA.md)
        self.fw_slot = None           # the OTA slot that version was validated in (None: never updated)
        self._kept = {}               # state fields of a newer firmware, saved back unchanged
        self.save_failing = False     # the last periodic save failed; retried every poll
        self._saving = False          # inside store.save: power_fail() leaves it to finish
        self.recovery_nonce = 0       # while state_lost: the value the head-end's floor must carry
        # frozen daily/monthly registers and alarm counters (storage/history.py)
        self.history = hist.History(history_dir, self._registers)

    # ---------------- state ----------------
    def restore(self, provisioned=False):
        """Load the newest usable state (storage/record.py); returns True if
        one was found. provisioned: secrets.json is there."""
        return record.restore(self, provisioned)

    def _try_save(self):
        try:
            self.save()
            return True
        except Exception:  # noqa: BLE001 - OSError, MemoryError: the next save retries
            return False

    def _resume_from(self, ml):
        # After a restore: windows that measure "since" something start from
        # the restored volume, not from zero: else the first minute after a
        # reboot looks like the whole register flowed at once.
        self._last_save_ml = ml
        self._rate_ml = ml
        self._rate_ms = self.clock.ticks_ms()
        self._v_ml = ml
        if self.detector is not None:
            self.detector.restart(self.clock.time(), ml)

    def save(self):
        """Write the state record now (storage/record.py). Raises when the
        write fails: the callers that changed a field for it roll it back."""
        now = self.clock.time()
        # an untrusted clock was raised to the floor and runs from there,
        # so it is still a lower bound of the true time
        floor = max(self.time_floor, now) if now >= TIME_MIN else self.time_floor
        s = record.build(self, floor)
        self._saving = True
        try:
            self.store.save(s)
        finally:
            self._saving = False
        try:
            self.history.flush()      # records reach their rings after the state holds them
        except OSError:
            pass                      # still pending: the next save writes them
        self.time_floor = floor
        self._last_save_ml = self.volume.ml()
        self._last_save_t = now

    def _persist(self):
        # Saves the loop makes on its own (valve moves, rollover, the volume
        # rule): a failing flash must not stop metering. The state stays in
        # RAM, the failure is logged once, and every poll retries.
        try:
            self.save()
        except Exception:  # noqa: BLE001 - OSError (flash full), MemoryError
            if not self.save_failing:
                self.save_failing = True
                self.log.add(codes.EV_STORAGE_FAILED,
                             min(self.volume.ml() - self._last_save_ml, 1 << 30))
            return
        self.save_failing = False

    def _check_clock(self):
        # A clock that is unset (an RTC that lost power restarts in 2000) or
        # behind the last trusted time is not believed. It is raised to the
        # floor, so nothing time-based runs backwards, and friendly hours
        # wait for a trusted set_time (technician, or the head-end's signed
        # time command).
        now = self.clock.time()
        floor = self.time_floor
        why = codes.CLOCK_UNSET if now < TIME_MIN else codes.CLOCK_BEHIND if now < floor else 0
        if why:
            if floor >= TIME_MIN:
                self.clock.set_time(floor)
            self.clock_trusted = False
            self.log.add(codes.EV_CLOCK_UNTRUSTED, why)
            self._persist()      # distrust survives the next reboot

    # ---------------- the loop ----------------
    def poll(self):
        """Fold new pulses into volume and money, then apply the credit policy."""
        n = self.pulses.take()
        if n > 0:
            self.volume.add(n)
            self._reversing = False
        elif n < 0:
            self.reverse.add(-n)
            if not self._reversing:
                self._reversing = True
                self.log.add(codes.EV_REVERSE_FLOW, -n)
        now = self.clock.time()
        if now < self.time_floor:
            self._check_clock()
            now = self.clock.time()
        ml = self.volume.ml()
        self._measure_rate(ml)
        if now < TIME_MIN:
            # the clock is not set: bill the water, nothing time-based
            self._charge(self.billing.step(ml, self.billing.seg_s))
        else:
            if self.billing.seg_s < TIME_MIN:
                self._anchor_time(now)
            # the period closes first, then a staged tariff opens its segment:
            # the other order would bill the standing charge twice
            h = self.history
            if now >= self.period_end:
                self._close_periods(ml, now)
            if not h.day_end:
                h.anchor(now, self.cfg["tz"])
            elif now >= h.day_end:
                # the day is billed to its midnight, then frozen
                self._charge(self.billing.step(ml, h.day_end))
                h.close_day(now, self.cfg["tz"])
                self._persist()
            if self.staged is not None and now >= self.staged.activate_at:
                self._charge(self.billing.change_tariff(self.staged, ml, now))
                self.log.add(codes.EV_TARIFF, self.staged.version)
                self.staged = None
                self._persist()
            self._charge(self.billing.step(ml, now))
            self._weekly_repayment(now)
        if self.detector is not None:
            self.detector.step(now, ml, n > 0, not self.want_open)
            self._act_on_findings()
        if self.history.alarms(now, self._alarm_bits()):
            self._persist()
        self._policy(now)
        self._valve_step(now, ml)
        if (self.save_failing or ml - self._last_save_ml >= self.cfg["save_l"] * 1000
                or (ml != self._last_save_ml and now - self._last_save_t >= self.cfg["save_s"])):
            self._persist()

    def _close_periods(self, ml, now):
        # Every period end passed since the last poll closes in turn with its
        # own standing and minimum charge, so a clock that jumps forward (a
        # trusted time after a power cut stopped an untrusted clock) skips no
        # minimum charge. The water counted by now belongs to the first one.
        # At most _CATCHUP_MAX at once (one event each, arg 0); the later ends
        # are passed over (one more event, arg: how many) and the open period
        # runs from the last closed end to the next end after now, its
        # standing charge in full, one minimum charge.
        h, day, tz = self.history, self.cfg["period_day"], self.cfg["tz"]
        for _ in range(_CATCHUP_MAX):
            end = self.period_end
            self._charge(self.billing.roll_period(ml, end))
            h.close_month(end)
            self.period_end = timeutil.next_month_day(end, day, tz)
            self.log.add(codes.EV_PERIOD_ROLLOVER, 0)
            if now < self.period_end:
                break
            self._persist()      # the state holds only the newest record: one save each
        else:
            skipped = 0
            while now >= self.period_end:
                skipped += 1
                self.period_end = timeutil.next_month_day(self.period_end, day, tz)
            self.log.add(codes.EV_PERIOD_ROLLOVER, skipped)
        self._persist()

    def _charge(self, d):
        self.balance -= d
        self.charged += d

    def _registers(self):
        # what the history freezes: volume, money charged, balance
        return self.volume.ml(), self.charged, self.balance

    def _alarm_bits(self):
        a = self.detector.active if self.detector is not None else 0
        v = self.valve
        return ((hist.A_LEAK if a & detect.LEAK else 0) | (hist.A_BURST if a & detect.BURST else 0)
                | (hist.A_TAMPER if a & detect.TAMPER else 0)
                | (hist.A_REVERSE if self._reversing else 0)
                | (hist.A_BATTERY if a & (detect.BATTERY_LOW | detect.BATTERY_CUT) else 0)
                | (hist.A_VALVE if v is not None and v.fault else 0))

    def _anchor_time(self, now):
        # First valid wall time after running on an unset clock: time-based
        # charges start from here, never from the RTC's year 2000.
        b = self.billing
        b.anchor(now)
        if b.period_start_s < TIME_MIN:
            b.period_start_s = now
        self.period_end = timeutil.next_month_day(now, self.cfg["period_day"], self.cfg["tz"])
        self.history.anchor(now, self.cfg["tz"])
        self._persist()

    def _measure_rate(self, ml):
        # Flow over a window of FLOW_WINDOW_S, in mL/h, for display/telemetry.
        t = self.clock.ticks_ms()
        dt = self.clock.ticks_diff(t, self._rate_ms)
        if dt >= FLOW_WINDOW_S * 1000:
            self.flow_mlph = (ml - self._rate_ml) * 3_600_000 // dt
            self._rate_ml = ml
            self._rate_ms = t

    def _weekly_repayment(self, now):
        # each local Monday 00:00: the rule's weekly amount, from the balance
        # above zero only (metering/debt.py)
        take = self.debt_reg.weekly(now, self.cfg["tz"], self.balance, self.billing.tariff)
        if take is None:
            return
        if take > 0:
            self.balance -= take
            self.log.add(codes.EV_DEBT, -take)
        self._persist()

    # ---------------- credit policy (creditpolicy.py) ----------------
    friendly = creditpolicy.friendly
    owed_friendly = creditpolicy.owed_friendly
    _may_owe = creditpolicy._may_owe
    _policy = creditpolicy._policy
    request_emergency = creditpolicy.request_emergency
    grant_emergency = creditpolicy.request_emergency   # the card session's name for it

    # ---------------- valve intent (valve/intent.py) ----------------
    _act_on_findings = intent._act_on_findings
    confirm = intent.confirm
    _set_valve = intent._set_valve
    reconcile_valve = intent.reconcile_valve
    power_fail = intent.power_fail
    _valve_step = intent._valve_step
    request_valve = intent.request_valve
    valve_test = intent.valve_test
    exercise_valve = intent.exercise_valve

    # ---------------- credit in (credit.py) ----------------
    apply_credit = credit.apply_credit
    add_arrears = credit.add_arrears
    void_credit = credit.void_credit
    _nonce = credit._nonce
    restore_floors = credit.restore_floors
    _reject = credit._reject
    install = credit.install

    # ---------------- requests from cards, MQTT, the REPL ----------------
    def event(self, code, arg=0):
        """Let cards, MQTT and the REPL log an event of their own."""
        return self.log.add(code, arg)

    def configure(self, key, value, source):
        """The one way to change a setting (REPL "repl", head-end "mqtt"):
        checked against config's one table (a head-end may set config.REMOTE
        only), saved to config.json, then in force, then logged (EV_CONFIG,
        arg config.number(key)). Returns (result code, reason or None)."""
        code, why = config.check(key, value, self.cfg, source == "mqtt")
        if code != codes.ACCEPTED:
            return code, why
        had, old = key in self.cfg, self.cfg.get(key)
        self.cfg[key] = value
        if key == "tz":
            self.billing.tz = value
        try:
            if key in IDENTITY:
                self.save()      # identity lives in the state; config.json keeps a copy
            if self.persist_config is not None:
                self.persist_config()
        except Exception:  # noqa: BLE001 - not saved, so not in force
            if had:
                self.cfg[key] = old
            else:
                del self.cfg[key]
            return codes.STORAGE, "not saved"
        self.log.add(codes.EV_CONFIG, config.number(key))
        return codes.ACCEPTED, None

    def set_k_factor(self, num, den):
        """Technician calibration. Volume measured so far is kept as it is."""
        self.poll()          # pulses counted so far belong to the old K
        try:
            self.volume.set_k(num, den)
            self.reverse.set_k(num, den)
        except ValueError:
            return codes.RANGE
        self.log.add(codes.EV_KFACTOR, num * 1000 // den)
        self.save()
        return codes.ACCEPTED

    def set_time(self, secs):
        """Technician (REPL) clock set; the event carries the step in seconds.
        A step back re-derives the period end, so a period is never skipped."""
        old = self.clock.time()
        self.clock.set_time(secs)
        if secs < old:
            # a step back of less than a period over a period end does not
            # close (and minimum-charge) that period twice; a longer one is
            # a clock that ran ahead, and the calendar restarts from secs
            start = self.billing.period_start_s
            if not secs < start < secs + _PERIOD_MAX_S:
                start = secs
            self.period_end = timeutil.next_month_day(start, self.cfg["period_day"], self.cfg["tz"])
            self.history.anchor(secs, self.cfg["tz"])
        # an authority set it: the clock is trusted again, and the floor
        # follows it, backwards too (a clock that ran ahead is corrected)
        self.time_floor = secs
        self.clock_trusted = secs >= TIME_MIN
        self.log.add(codes.EV_TIME_SET, max(-(1 << 30), min(secs - old, 1 << 30)))
        self.save()
        return codes.ACCEPTED

    def tariff_verdict(self, t, office=False):
        """What stage_tariff would answer for the parsed tariff t, without
        staging it; cheap, so a signed tariff is judged before its (slow)
        signature is checked. Within an epoch the version must rise by 1 to
        TARIFF_STEP: a version far ahead (2^31 - 1) cannot block the ones to
        come. A higher epoch is the office's signed reset: any version."""
        cur = self.staged if self.staged is not None else self.billing.tariff
        if t.epoch > cur.epoch:
            return codes.ACCEPTED if office else codes.REFUSED
        if t.epoch < cur.epoch or t.version < cur.version:
            return codes.OLD
        if t.version == cur.version:
            return codes.USED
        if t.version - cur.version > TARIFF_STEP:
            return codes.RANGE
        return codes.ACCEPTED

    def stage_tariff(self, d, office=False):
        """Accept a tariff in wire form; it takes effect at its activation
        time. office: it carries a verified office signature (region
        tariff, tariff card), which alone may raise the tariff epoch. A
        per-meter tariff without "e" belongs to the epoch in force."""
        code, t = tariffs.parse(d, received=True)
        if t is not None and not office and "e" not in d:
            t.epoch = (self.staged or self.billing.tariff).epoch
        if t is not None:
            code = self.tariff_verdict(t, office)
        if code != codes.ACCEPTED:
            if code != codes.USED:
                self.log.add(codes.EV_TARIFF_REJECTED, code)
            return code
        before = self.staged
        self.staged = t
        try:
            self.save()
        except Exception:  # noqa: BLE001 - not durable, so not staged
            self.staged = before
            return codes.STORAGE
        self.poll()  # activation time may already have passed
        return codes.ACCEPTED

    def cell_fitted(self):
        """A new cell in a battery meter, on the office's word (fleet op
        "cell", after the technician's job): the charge count starts again,
        which lifts a valve reserve closure. Never on a power-on alone: the
        customer can pull and refit the same cell."""
        self.cell.fitted(self.clock.time())
        self.log.add(codes.EV_LOW_BATTERY, 100)     # level 0, 100 % left
        try:
            self.save()
        except Exception:  # noqa: BLE001 - the next periodic save carries it
            return codes.STORAGE
        return codes.ACCEPTED

    # ---------------- counters that only go up (counters.py) ----------------
    command_counter = property(counters.command_counter)
    accept_command = counters.accept_command
    office_fresh = counters.office_fresh
    office_note = counters.office_note
    retire_office_keys = counters.retire_office_keys
    raise_fw_floor = counters.raise_fw_floor
    attach_office = counters.attach_office

    # ---------------- views ----------------
    # the debt register's figures (metering/debt.py), read-only
    @property
    def debt(self):
        return self.debt_reg.amount

    @property
    def debt_friendly(self):
        return self.debt_reg.friendly

    @property
    def arrears_seq(self):
        return self.debt_reg.arrears_seq

    @property
    def debt_week_end(self):
        return self.debt_reg.week_end

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
            "sf": self.state_flags(),
            "rn": self.recovery_nonce if self.state_lost else 0,
            "dbt": self.debt_reg.amount,
        }

    def state_flags(self):
        """SF_* bits: the clock, the state's history and the flash."""
        return ((0 if self.clock_trusted else SF_CLOCK_UNTRUSTED)
                | (SF_STATE_ROLLBACK if self.rollback else 0)
                | (SF_STATE_LOST if self.state_lost else 0)
                | (SF_STORAGE if self.save_failing else 0))

