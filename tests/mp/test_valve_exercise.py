# Anti-seize exercise: a valve that has not moved for exercise_days does a
# close/open cycle at exercise_hour (local) once no water has flowed for
# quiet_s; it never leaves a paying customer closed.
import codes
from simkit import make_meter, reboot, run
from valve import EX_START, EX_DONE, EX_STUCK, EX_REOPEN, VF_NOT_OPEN, VF_NOT_CLOSED

OPEN = 1
CLOSED = 0
DAY = 86400


def evs(m, code):
    return [e[3] for e in m.log._ring if e[2] == code]


def paying(board_opts=None, **cfg):
    m, hw = make_meter(board_opts=board_opts, reopen="auto", **cfg)
    m.apply_credit("card", 1, 1, 50_000_000)
    run(m, hw, 8)
    assert hw.world.valve.state == OPEN
    m.valve.last_move = hw.clock.time() - 31 * DAY    # stood still for a month
    return m, hw


def to_hour(m, hw, h):
    """Run in 1-minute steps until local hour h (the clock starts at 00:00 UTC)."""
    while (hw.clock.time() // 3600) % 24 != h:
        run(m, hw, 60, 60_000)


def test_exercise_cycles_at_the_quiet_hour_and_is_logged_and_saved():
    m, hw = paying()
    to_hour(m, hw, 2)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [], "not before the configured hour"
    to_hour(m, hw, 3)
    run(m, hw, 5)
    v = hw.world.valve
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE]
    assert len(v.rises["close"]) == 1 and v.state == OPEN and m.want_open
    assert hw.clock.time() - m.valve.last_move < 60
    # saved: a restart does not exercise again
    m2, hw2 = reboot(m, hw, valve_open=True)
    assert m2.valve.last_move == m.valve.last_move
    run(m, hw, 3600, 60_000)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE], "once, not every hour"


def test_no_exercise_while_water_flows_or_if_it_moved_recently():
    m, hw = paying()
    hw.world.flow.set_rate_lph(100)     # a pulse every 36 s: never quiet for 900 s
    to_hour(m, hw, 4)
    assert evs(m, codes.EV_VALVE_EXERCISE) == []
    m, hw = paying()
    m.valve.last_move = hw.clock.time() - 29 * DAY
    to_hour(m, hw, 4)
    assert evs(m, codes.EV_VALVE_EXERCISE) == []


def test_exercise_hour_and_days_come_from_the_board_config():
    m, hw = paying(board_opts={"valve_cfg": {"exercise_hour": 1, "exercise_days": 7}})
    m.valve.last_move = hw.clock.time() - 8 * DAY
    to_hour(m, hw, 1)
    run(m, hw, 180, 60_000)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE]


def test_failed_reopen_is_retried_and_raises_an_alarm():
    m, hw = paying()
    v = hw.world.valve
    to_hour(m, hw, 3)
    assert m.valve.exercising == 1      # closing now
    v.jam(CLOSED)                       # ... and it will not come back open
    run(m, hw, 5)
    assert EX_REOPEN in evs(m, codes.EV_VALVE_EXERCISE)
    assert evs(m, codes.EV_VALVE_FAULT)[0] == VF_NOT_OPEN + 256
    assert m.want_open, "the intent stays open: the customer is paying"
    n = len(v.rises["open"])
    run(m, hw, 120)
    assert len(v.rises["open"]) > n, "keeps retrying"
    v.unjam()
    run(m, hw, 600)
    assert v.state == OPEN and m.valve.fault == 0


def test_a_seized_valve_is_reported_and_left_open():
    m, hw = paying()
    v = hw.world.valve
    v.jam(OPEN)
    to_hour(m, hw, 3)
    run(m, hw, 10)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_STUCK]
    assert evs(m, codes.EV_VALVE_FAULT)[0] == VF_NOT_CLOSED + 256
    assert v.state == OPEN and m.want_open
    n = len(v.rises["close"])
    run(m, hw, 600)
    assert len(v.rises["close"]) == n, "no close retries: the intent is open"


def test_a_closed_valve_is_not_exercised_unless_configured():
    m, hw = make_meter(friendly_hours=[0, 0], friendly_days=[])
    m.valve.last_move = hw.clock.time() - 31 * DAY
    to_hour(m, hw, 4)
    assert evs(m, codes.EV_VALVE_EXERCISE) == []
    m, hw = make_meter(board_opts={"valve_cfg": {"exercise_closed": True}},
                       friendly_hours=[0, 0], friendly_days=[])
    m.valve.last_move = hw.clock.time() - 31 * DAY
    to_hour(m, hw, 4)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE]
    assert hw.world.valve.state == CLOSED and len(hw.world.valve.rises["open"]) == 1


def test_a_cut_off_during_the_exercise_wins():
    m, hw = paying(friendly_hours=[0, 0], friendly_days=[])
    to_hour(m, hw, 3)
    run(m, hw, 1)
    assert m.valve.exercising
    m.request_valve(False, "mqtt")
    run(m, hw, 10)
    assert m.valve.exercising == 0 and hw.world.valve.state == CLOSED


def test_motorised_valve_exercise():
    m, hw = paying(board_opts={"valve": "motor"})
    to_hour(m, hw, 3)
    run(m, hw, 20)
    assert evs(m, codes.EV_VALVE_EXERCISE) == [EX_START, EX_DONE]
    assert hw.world.valve.state == OPEN and hw.world.valve.stall_us == 0
