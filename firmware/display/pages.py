# The pages the customer cycles through with the button, as 8-cell texts
# and icons (docs/DISPLAY.md has the table and the label's code key). Read
# from the meter's own fields, inside the loop that runs the meter.
import codes
import units
from display import glass as G
from metering import detect

BALANCE = const(0)
VALVE = const(1)           # second: a customer without water asks "why?" first
VOLUME = const(2)
TOPUP = const(3)
TARIFF = const(4)
TODAY = const(5)
MONTH = const(6)
ALARMS = const(7)
BATTERY = const(8)
COUNT = const(9)

# active findings and the code each shows on the alarm page: the number of
# the event it raises (codes.py), so the label, the log and the head-end agree
ALARM_CODES = ((detect.LEAK, codes.EV_LEAK), (detect.BURST, codes.EV_BURST),
               (detect.TAMPER, codes.EV_TAMPER), (detect.FLOW_CLOSED, codes.EV_FLOW_WHILE_CLOSED),
               (detect.SENSOR, codes.EV_SENSOR_FAULT), (detect.BATTERY_LOW, codes.EV_LOW_BATTERY))


def cells(s):
    return len(s) - s.count(".")


def line(left, right=""):
    """left-aligned left, right-aligned right, 8 cells; "--------" when it
    does not fit (a figure the glass cannot hold is never shown cut)."""
    pad = G.CELLS - cells(left) - cells(right)
    if pad < 0:
        return "-" * G.CELLS
    return left + " " * pad + right


def error(code):
    """A refused request: E and its result code (codes.py), e.g. E 07."""
    return line("E", "%02d" % code)


def status_icons(m):
    """Icons shown on every page: valve, credit, alarms."""
    i = G.VALVE if m.want_open else G.SHUT
    if m.low_level:
        i |= G.LOW
    if m.emergency_owed:
        i |= G.EMERG
    if m.awaiting_confirm:
        i |= G.PRESS
    d = m.detector
    if d is not None and d.active:
        i |= G.ALARM
        if d.active & (detect.BATTERY_LOW | detect.BATTERY_CUT):
            i |= G.BATT
    return i


def render(page, m, last_topup, battery):
    """(text, icons) of a page. last_topup: (amount, result code) or None;
    battery: an object with millivolts(), or None."""
    icons = status_icons(m)
    if page == BALANCE:
        return line("", units.money(m.balance)), icons | G.MONEY
    if page == VOLUME:
        return line("", units.volume(m.volume.ml())), icons | G.M3
    if page == TOPUP:
        if last_topup is None:
            return line("A", "----"), icons | G.CARD
        amount, code = last_topup
        if code == codes.ACCEPTED:
            return line("A", units.money(amount)), icons | G.CARD | G.MONEY
        return error(code), icons | G.CARD
    if page == TARIFF:
        b = m.billing
        pv = b.period_ml(m.volume.ml())
        t = b.tariff
        n = 1
        for upper, _ in t.blocks:
            if upper == 0 or pv < upper:
                break
            n += 1
        return line("b%d" % n, units.money(t.price_at(pv))), icons | G.BLOCK | G.MONEY | G.PER_M3
    if page == TODAY:
        return line("", units.volume(m.history.today()["ml"])), icons | G.M3 | G.TODAY
    if page == MONTH:
        return line("", units.volume(m.history.month()["ml"])), icons | G.M3 | G.MONTH
    if page == VALVE:
        if m.want_open:
            return line("OPEn"), icons
        return line("OFF", "%02d" % m.why_closed), icons
    if page == ALARMS:
        active = m.detector.active if m.detector is not None else 0
        s = "AL"
        for bit, code in ALARM_CODES:
            if active & bit and cells(s) + 3 <= G.CELLS:
                s += " %d" % code
        return line(s if active else "AL", "" if active else "--"), icons
    mv = battery.millivolts() if battery is not None else None
    if mv is None:
        return line("bAt", "--"), icons
    return line("bAt", "%d.%02d" % (mv // 1000, mv % 1000 // 10)), icons
