# The valve policy in the meter: remote/technician commands through
# request_valve(), overrides, the service test, faults while metering goes on.
import codes
import meter as M
from simkit import make_meter, reboot, run
from valve import VF_NOT_CLOSED, VF_CLEARED, EX_START, EX_DONE

OPEN = 1
CLOSED = 0
STRICT = {"friendly_hours": [0, 0], "friendly_days": []}


def evs(m, code):
    return [e[3] for e in m.log._ring if e[2] == code]


def moves(hw):
    v = hw.world.valve
    return len(v.rises["open"]) + len(v.rises["close"])


def test_remote_open_without_credit_is_refused():
    m, hw = make_meter(**STRICT)
    assert not m.want_open and hw.world.valve.state == CLOSED
    n = moves(hw)
    assert m.request_valve(True, "mqtt") == codes.REFUSED
    run(m, hw, 3)
    assert not m.want_open and hw.world.valve.state == CLOSED and moves(hw) == n


def test_authorised_override_opens_and_survives_the_credit_policy_until_credit_is_back():
    m, hw = make_meter(reopen="auto", **STRICT)
    assert m.request_valve(True, "mqtt", override=True) == codes.ACCEPTED
    assert m.why_closed == M.WHY_OVERRIDE
    hw.world.flow.set_rate_lph(600)
    run(m, hw, 600, 10_000)
    assert m.want_open and hw.world.valve.state == OPEN, "override holds on no credit"
    assert m.balance < 0                                  # the water is still billed
    assert m.apply_credit("card", 1, 1, -m.balance + 3_500) == codes.ACCEPTED
    run(m, hw, 2)
    assert m.why_closed == M.WHY_NONE, "credit is back: normal policy again"
    run(m, hw, 120)
    assert not m.want_open and m.why_closed == M.WHY_CREDIT   # ... and it cuts off when it runs out
    assert hw.world.valve.state == CLOSED


def test_override_survives_a_restart():
    m, hw = make_meter(**STRICT)
    m.request_valve(True, "mqtt", override=True)
    m2, hw2 = reboot(m, hw, valve_open=True)
    run(m2, hw2, 5)
    assert m2.want_open and hw2.world.valve.state == OPEN


def test_remote_close_holds_through_top_ups_until_an_open_command():
    m, hw = make_meter(reopen="auto")
    m.apply_credit("card", 1, 1, 5_000_000)
    run(m, hw, 1)
    assert hw.world.valve.state == OPEN
    assert m.request_valve(False, "mqtt") == codes.ACCEPTED
    run(m, hw, 2)
    assert hw.world.valve.state == CLOSED and m.why_closed == M.WHY_COMMAND
    m.apply_credit("card", 1, 2, 5_000_000)
    run(m, hw, 2)
    assert not m.want_open and hw.world.valve.state == CLOSED
    assert m.confirm() == codes.REFUSED
    assert m.request_valve(True, "repl") == codes.ACCEPTED
    run(m, hw, 2)
    assert m.want_open and hw.world.valve.state == OPEN and m.why_closed == M.WHY_NONE
    assert evs(m, codes.EV_VALVE_CLOSED)[-1] == M.WHY_COMMAND
    assert evs(m, codes.EV_VALVE_OPEN)[-1] == M.WHY_NONE


def test_remote_open_with_credit_skips_the_tap():
    m, hw = make_meter(reopen="confirm", **STRICT)
    m.apply_credit("card", 1, 1, 5_000_000)
    run(m, hw, 2)
    assert m.awaiting_confirm and not m.want_open
    assert m.request_valve(True, "mqtt") == codes.ACCEPTED
    run(m, hw, 2)
    assert not m.awaiting_confirm and hw.world.valve.state == OPEN


def test_service_test_cycles_the_valve_and_reports():
    m, hw = make_meter(reopen="auto")
    m.apply_credit("card", 1, 1, 5_000_000)
    run(m, hw, 2)
    n = moves(hw)
    assert m.valve_test() == codes.ACCEPTED
    assert m.valve_test() == codes.REFUSED, "busy"
    run(m, hw, 3)
    assert moves(hw) == n + 2 and hw.world.valve.state == OPEN and m.want_open
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE]
    assert m.exercise_valve() == codes.ACCEPTED


def test_service_test_of_a_closed_valve_with_no_credit_needs_override():
    m, hw = make_meter(**STRICT)
    assert m.valve_test() == codes.REFUSED
    assert m.valve_test(override=True) == codes.ACCEPTED
    run(m, hw, 3)
    assert hw.world.valve.state == CLOSED and not m.want_open


def test_motorised_valve_cuts_off_when_credit_runs_out():
    m, hw = make_meter(board_opts={"valve": "motor"}, reopen="auto", **STRICT)
    m.apply_credit("card", 1, 1, 35_000)    # 100 L
    run(m, hw, 8)
    assert hw.world.valve.state == OPEN
    hw.world.flow.set_rate_lph(2500)
    run(m, hw, 300)
    assert not m.want_open and hw.world.valve.state == CLOSED
    d = hw.world.flow.delivered_ml()
    run(m, hw, 60)
    assert hw.world.flow.delivered_ml() == d
    assert hw.world.valve.stall_us == 0 and hw.world.valve.shoot_through == 0
    assert 100_000 < d < 106_000     # 5 s of travel at 0.69 L/s on top of the poll


def test_stuck_valve_at_cut_off_is_reported_retried_and_metering_goes_on():
    m, hw = make_meter(reopen="auto", **STRICT)
    m.apply_credit("card", 1, 1, 35_000)
    hw.world.valve.jam(OPEN)
    hw.world.flow.set_rate_lph(2500)
    run(m, hw, 200)
    assert not m.want_open and hw.world.valve.state == OPEN
    assert evs(m, codes.EV_VALVE_FAULT)[0] == VF_NOT_CLOSED + 256
    b = m.balance
    run(m, hw, 60)
    assert m.balance < b, "water through a stuck valve is still billed"
    hw.world.valve.unjam()
    run(m, hw, 200)
    assert hw.world.valve.state == CLOSED and evs(m, codes.EV_VALVE_FAULT)[-1] == VF_CLEARED
