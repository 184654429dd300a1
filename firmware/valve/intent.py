# The meter's valve intent: whether it wants the valve open (want_open), why
# it is closed (why_closed, codes.WHY_*), and whether a reopen waits for the
# user's confirmation (awaiting_confirm), with the rules that change them:
# detector findings, the user's confirm, remote and technician commands, the
# boot's reconciliation with the feedback, the power-fail input, and the
# controller's step from each poll (docs/VALVE.md).
#
# These are methods of meter.Meter (it binds them; self is the meter). They
# and the credit policy (creditpolicy.py: its cut-off and reopen through
# _set_valve, and the wait for a confirmation) are the only writers of the
# intent; storage/record.py restores it. The drivers and the controller
# (valve/controller.py) move the valve.
import codes
from codes import (WHY_NONE, WHY_CREDIT, WHY_COMMAND, WHY_LEAK, WHY_BURST, WHY_TAMPER,
                   WHY_BATTERY, WHY_SENSOR, WHY_OVERRIDE, WHY_POWER)
import timeutil
from metering import detect

OPEN = const(1)
CLOSED = const(0)

# findings that close the valve (detect bit, config key or None = always, reason)
_CLOSERS = (
    (detect.LEAK, "leak_close", WHY_LEAK),
    (detect.BURST, "burst_close", WHY_BURST),
    (detect.TAMPER, "tamper_close", WHY_TAMPER),
    (detect.BATTERY_CUT, None, WHY_BATTERY),
    (detect.SENSOR, "sensor_close", WHY_SENSOR),
)
# reasons that lift by themselves once the condition is gone; the others
# (leak, burst, tamper) wait for a technician or an authorised command
_SELF_CLEARING = ((WHY_BATTERY, detect.BATTERY_CUT), (WHY_SENSOR, detect.SENSOR))


def _act_on_findings(self):
    found = self.detector.active
    if self.want_open:
        for bit, key, why in _CLOSERS:
            if found & bit and (key is None or self.cfg[key]):
                self._set_valve(False, why)
                return
    else:
        for why, bit in _SELF_CLEARING:
            if self.why_closed == why and not found & bit:
                # condition gone: hand the valve back to the credit policy
                self.why_closed = WHY_CREDIT
                self._persist()


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
    self._persist()


def reconcile_valve(self):
    """At boot: settle the valve from the stored intent, the credit and the
    feedback (docs/VALVE.md, reconciliation matrix). Never reopens on
    exhausted credit outside a friendly period; never leaves a paying
    household closed. Drives the valve only if the feedback does not
    already show the wanted position (without feedback, always)."""
    v = self.valve
    if v is None:
        return
    now = self.clock.time()
    if not v.last_move:
        v.last_move = now
    changed = False
    if self.why_closed == WHY_POWER:
        # closed only because the supply went: back to the intent it
        # had, which the rules below then judge as at any boot
        self.want_open = True
        self.why_closed = WHY_NONE
        changed = True
    if self.want_open:
        if (self.balance <= 0 and self.why_closed != WHY_OVERRIDE
                and not self._may_owe(now)):
            self.want_open = False
            self.why_closed = WHY_CREDIT
            changed = True
    elif self.why_closed == WHY_CREDIT and self.balance > 0 and self.cfg["reopen"] == "auto":
        self.want_open = True
        self.why_closed = WHY_NONE
        changed = True
    if v.reconcile(OPEN if self.want_open else CLOSED) or changed:
        self.log.add(codes.EV_VALVE_OPEN if self.want_open else codes.EV_VALVE_CLOSED,
                     self.why_closed)
    if changed:
        self._persist()


def power_fail(self):
    """The board's power-fail input fell: the hold-up capacitor carries
    one valve pulse and one save, so close first, then save (docs/VALVE.md
    "Power fail"). A latching valve stays shut with no power, so no water
    flows unmetered while the meter is off. Called from a soft IRQ: if it
    lands inside a save (a slice on the meter's thread), that save holds
    the volume and balance, and the open intent it records is what the
    next boot makes of why power anyway."""
    if self.want_open and self.valve is not None:
        self.want_open = False
        self.why_closed = WHY_POWER
        self.valve.close()
        self.log.add(codes.EV_VALVE_CLOSED, WHY_POWER)
    if not self._saving:
        self._persist()


def _valve_step(self, now, ml):
    # From poll(): the controller's retries, tamper watch and exercise.
    v = self.valve
    if v is None:
        return
    if ml != self._v_ml:
        self._v_ml = ml
        self._v_still = now
    hour = -1
    if v.exercise_due(now):
        hour = timeutil.local_parts(now, self.cfg["tz"])[3]
    v.step(now, hour, now - self._v_still)
    if self.why_closed == WHY_OVERRIDE and self.balance > 0:
        self.why_closed = WHY_NONE    # credit is back: the override has done its job
        self._persist()
    if v.dirty:
        v.dirty = False
        self._persist()


def request_valve(self, want_open, source, override=False):
    """Remote or technician command (source: "mqtt", "repl", ...). A remote
    open with no credit is REFUSED unless override is True, which the
    caller sets only for an authorised (signed) override command; such an
    open survives the credit policy until credit is back. A close holds
    until an open command (WHY_COMMAND). Returns a result code."""
    if want_open:
        if self.balance <= 0 and not override:
            return codes.REFUSED
        self.awaiting_confirm = False
        self._set_valve(True, WHY_NONE if self.balance > 0 else WHY_OVERRIDE)
    else:
        self.awaiting_confirm = False
        self._set_valve(False, WHY_COMMAND)
    return codes.ACCEPTED


def valve_test(self, source="card", override=False):
    """Technician test (service card, REPL, MQTT): one exercise cycle now.
    A closed valve is cycled open/closed, so with no credit that needs
    override. REFUSED with no valve, or while it is moving."""
    v = self.valve
    if v is None or v.busy:
        return codes.REFUSED
    if not self.want_open and self.balance <= 0 and not override:
        return codes.REFUSED
    v.exercise()
    return codes.ACCEPTED


def exercise_valve(self):
    """The technician REPL's valve test (service.valve_test)."""
    return self.valve_test("repl")
