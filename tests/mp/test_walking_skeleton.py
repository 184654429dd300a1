# The walking skeleton end to end on the simulated board: water flows,
# volume and money follow, the valve closes when credit is gone, and the
# state survives a restart.
import codes
from simkit import make_meter, reboot, run


def test_counts_and_bills_at_flat_price():
    m, hw = make_meter(reopen="auto")
    assert m.apply_credit("card", 1, 1, 10_000_000) == codes.ACCEPTED
    assert hw.world.valve.passes()
    hw.world.flow.set_rate_lph(600)        # 10 L/min, K = 1 pulse/L
    run(m, hw, 60)
    assert m.volume.ml() == 10_000
    # 10 L at 350 000 units/m^3 = 3 500 units
    assert m.balance == 10_000_000 - 3_500


def test_valve_closes_when_credit_runs_out_and_flow_stops():
    m, hw = make_meter(reopen="auto", friendly_hours=[0, 0], friendly_days=[])
    m.apply_credit("card", 1, 1, 35_000)   # 100 L worth
    hw.world.flow.set_rate_lph(2500)
    run(m, hw, 300)
    assert not m.want_open
    assert hw.world.valve.state == 0        # physically closed
    assert hw.world.valve.shoot_through == 0
    delivered = hw.world.flow.delivered_ml()
    run(m, hw, 60)
    assert hw.world.flow.delivered_ml() == delivered, "water must stop once closed"
    assert 100_000 <= delivered < 101_500   # overshoot bounded by one poll at 2.5 m^3/h
    assert m.balance <= 0


def test_credit_is_applied_once():
    m, hw = make_meter()
    assert m.apply_credit("card", 5, 9, 1000) == codes.ACCEPTED
    assert m.apply_credit("card", 5, 9, 1000) == codes.USED
    assert m.balance == 1000


def test_state_survives_restart():
    m, hw = make_meter(reopen="auto")
    m.apply_credit("mqtt", 2, 1, 5_000_000)
    hw.world.flow.set_rate_lph(1200)
    run(m, hw, 120)
    m.save()
    vol, bal = m.volume.ml(), m.balance
    m2, hw2 = reboot(m, hw)
    assert (m2.volume.ml(), m2.balance) == (vol, bal)
    assert m2.apply_credit("mqtt", 2, 1, 5_000_000) == codes.USED
    from simkit import run as run2
    run2(m2, hw2, 120)                   # the restored meter runs on, no water, no charge
    assert (m2.volume.ml(), m2.balance, m2.want_open) == (vol, bal, True)
