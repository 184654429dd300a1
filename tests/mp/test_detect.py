# Detection: leak, burst, flow while closed, tamper, low battery, sensor cable.
import codes
from boards.unix.pins import SimPin, IN, PULL_UP
from simkit import make_meter, run
import meter as meter_mod


class Battery:
    def __init__(self, mv):
        self.mv = mv

    def millivolts(self):
        return self.mv


def _count(m, code):
    return len([e for e in m.log.recent(64) if e[2] == code])


def _open_meter(**cfg):
    m, hw = make_meter(reopen="auto", **cfg)
    m.apply_credit("card", 1, 1, 500_000_000)
    return m, hw


def test_leak_when_flow_never_stops():
    m, hw = _open_meter(leak_gap_s=600, leak_window_s=6 * 3600, leak_close=True)
    hw.world.flow.set_rate_lph(3)               # a dripping tap: a pulse every 20 min... too slow
    hw.world.flow.set_rate_lph(30)              # 30 L/h: a pulse every 2 minutes, no 10-min gap
    run(m, hw, 6 * 3600 - 300, 10_000)
    assert _count(m, codes.EV_LEAK) == 0
    run(m, hw, 600, 10_000)
    assert _count(m, codes.EV_LEAK) == 1
    assert not m.want_open and m.why_closed == meter_mod.WHY_LEAK


def test_no_leak_with_nightly_pause():
    m, hw = _open_meter(leak_gap_s=600, leak_window_s=6 * 3600)
    for _ in range(4):
        hw.world.flow.set_rate_lph(30)
        run(m, hw, 3 * 3600, 10_000)
        hw.world.flow.set_rate_lph(0)
        run(m, hw, 900, 10_000)
    assert _count(m, codes.EV_LEAK) == 0


def test_burst_closes_the_valve():
    m, hw = _open_meter(burst_lph=3000, burst_s=60, burst_close=True)
    hw.world.flow.set_rate_lph(2500)
    run(m, hw, 300)
    assert m.want_open and _count(m, codes.EV_BURST) == 0
    hw.world.flow.set_rate_lph(6000)
    run(m, hw, 130)
    assert _count(m, codes.EV_BURST) == 1
    assert not m.want_open and m.why_closed == meter_mod.WHY_BURST
    assert m.confirm() == codes.REFUSED          # a burst close is not undone by a tap


def test_flow_while_closed_is_reported_and_still_billed():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 1_000_000]]})
    m.apply_credit("card", 1, 1, 1_000_000)      # closed: waiting for confirmation
    hw.world.valve.state = 1                     # someone forced it open by hand
    hw.world.flow.set_rate_lph(3600)
    run(m, hw, 30)
    assert _count(m, codes.EV_FLOW_WHILE_CLOSED) == 1
    assert m.balance == 1_000_000 - m.volume.ml()


def test_tamper_switch_event_and_configurable_action():
    for close in (False, True):
        m, hw = _open_meter(tamper_close=close)
        tp = SimPin("tamper", IN, PULL_UP)
        m.detector._tamper = tp
        run(m, hw, 5)
        tp.drive(0)                               # case opened
        run(m, hw, 2)
        assert _count(m, codes.EV_TAMPER) == 1
        assert m.want_open == (not close)
        if close:
            assert m.why_closed == meter_mod.WHY_TAMPER


def test_low_battery_warns_then_closes_after_grace_and_recovers():
    m, hw = _open_meter(batt_low_mv=3300, batt_grace_s=3600)
    bat = Battery(3600)
    m.detector._battery = bat
    run(m, hw, 10)
    bat.mv = 3200
    run(m, hw, 60)
    assert _count(m, codes.EV_LOW_BATTERY) == 1 and m.want_open   # warned, still open
    run(m, hw, 3600, 10_000)
    assert not m.want_open and m.why_closed == meter_mod.WHY_BATTERY
    bat.mv = 3700                                 # battery changed
    run(m, hw, 5)
    assert m.want_open, "credit remains: the valve must reopen after the battery change"


def test_sensor_cable_cut_closes_and_keeps_the_reading():
    m, hw = _open_meter()
    loop = SimPin("loop", IN)
    m.detector._sensor = loop
    hw.world.flow.set_rate_lph(600)
    run(m, hw, 60)
    vol = m.volume.ml()
    loop.drive(1)
    run(m, hw, 2)
    assert not m.want_open and m.why_closed == meter_mod.WHY_SENSOR
    assert m.volume.ml() >= vol
    loop.drive(0)
    run(m, hw, 2)
    assert m.want_open


def test_reverse_flow_is_counted_apart_and_never_credits():
    m, hw = _open_meter()
    hw.world.flow.set_rate_lph(600)
    run(m, hw, 60)
    bal, vol = m.balance, m.volume.ml()
    hw.world.flow.set_reversed(True)
    run(m, hw, 60)
    assert m.volume.ml() == vol and m.balance == bal
    assert m.reverse.ml() == 10_000
    assert _count(m, codes.EV_REVERSE_FLOW) == 1
