# Valve drivers and the controller on the simulated board, without a meter:
# H-bridge safety, pulse widths, feedback checks, retries and backoff, fault
# injection (stuck open, stuck closed, broken feedback, moved by hand),
# motorised valve with limit switches and timeout.
import codes
from valve import (POSITION_OPEN, POSITION_CLOSED, POSITION_UNKNOWN, POSITION_MOVING,
                   VF_CLEARED, VF_NOT_OPEN, VF_NOT_CLOSED, VF_FEEDBACK)
from valvekit import rig, steps, BothHigh, faults

OPEN = 1
CLOSED = 0


def test_bridge_never_has_both_inputs_high():
    for kind in ("latching", "motor"):
        ctl, hw, log = rig(kind)
        both = BothHigh(hw)
        for i in range(6):
            ctl.open() if i % 2 == 0 else ctl.close()
            steps(ctl, hw, 1, 300)        # reverse mid-travel on the motor
        ctl.open()
        steps(ctl, hw, 20)
        assert both.n == 0 and hw.world.valve.shoot_through == 0, kind
        assert hw.world.valve.state == OPEN, kind
    # the watch can fail: driving the pins by hand is caught
    hw.valve_open_pin.value(1)
    hw.valve_close_pin.value(1)
    assert both.n == 1 and hw.world.valve.shoot_through == 1


def test_latching_pulse_width_comes_from_the_board_config():
    for width in (50, 30):
        ctl, hw, log = rig(pulse_ms=width, valve_open=True)
        rise = []
        fall = []
        hw.valve_close_pin.watch(
            lambda p, o, n: (rise if n else fall).append(hw.clock.now_us()) if o != n else None)
        ctl.close()
        assert fall[0] - rise[0] == width * 1000
        assert hw.valve_close_pin.value() == 0 and hw.valve_open_pin.value() == 0


def test_latching_close_and_open_are_confirmed_by_the_switches():
    ctl, hw, log = rig(valve_open=True)
    ctl.close()
    assert ctl.position == POSITION_MOVING
    steps(ctl, hw, 1)
    assert ctl.position == POSITION_CLOSED and hw.world.valve.state == CLOSED
    ctl.open()
    steps(ctl, hw, 1)
    assert ctl.position == POSITION_OPEN and hw.world.valve.state == OPEN
    assert ctl.actuations == 2 and faults(log) == []


def test_stuck_open_close_retries_then_faults_then_backs_off_until_it_closes():
    ctl, hw, log = rig(valve_open=True, retries=2, backoff_s=60, backoff_max_s=3600)
    hw.world.valve.jam(OPEN)
    ctl.close()
    steps(ctl, hw, 3)
    assert hw.world.valve.rises["close"] and len(hw.world.valve.rises["close"]) == 3  # 1 + 2 retries
    assert faults(log) == [VF_NOT_CLOSED + 256]
    assert ctl.position == POSITION_UNKNOWN and ctl.fault == VF_NOT_CLOSED
    steps(ctl, hw, 58)
    assert len(hw.world.valve.rises["close"]) == 3, "backoff: no pulse before 60 s"
    steps(ctl, hw, 5)
    assert len(hw.world.valve.rises["close"]) == 6
    assert faults(log) == [VF_NOT_CLOSED + 256, VF_NOT_CLOSED + 512]   # round 2 reported
    steps(ctl, hw, 100)
    assert len(hw.world.valve.rises["close"]) == 6, "second backoff doubles to 120 s"
    hw.world.valve.unjam()
    steps(ctl, hw, 30)
    assert hw.world.valve.state == CLOSED and ctl.position == POSITION_CLOSED
    assert faults(log)[-1] == VF_CLEARED and ctl.fault == 0


def test_backoff_is_capped():
    ctl, hw, log = rig(valve_open=True, retries=0, backoff_s=60, backoff_max_s=240)
    hw.world.valve.jam(OPEN)
    ctl.close()
    steps(ctl, hw, 1)
    times = []
    n = 1
    for s in range(2000):
        steps(ctl, hw, 1)
        k = len(hw.world.valve.rises["close"])
        if k != n:
            times.append(s)
            n = k
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and max(gaps) == 241 and min(gaps) >= 120, gaps   # 60, 120, 240, 240 ...


def test_stuck_closed_open_faults_and_keeps_retrying():
    ctl, hw, log = rig(valve_open=False)
    hw.world.valve.jam(CLOSED)
    ctl.open()
    steps(ctl, hw, 3)
    assert faults(log) == [VF_NOT_OPEN + 256] and ctl.position == POSITION_UNKNOWN
    assert not hw.world.valve.passes()
    hw.world.valve.unjam()
    steps(ctl, hw, 61)
    assert hw.world.valve.state == OPEN and ctl.position == POSITION_OPEN
    assert faults(log)[-1] == VF_CLEARED


def test_a_confirmed_open_does_not_clear_a_close_fault():
    ctl, hw, log = rig(valve_open=True)
    hw.world.valve.jam(OPEN)
    ctl.close()
    steps(ctl, hw, 3)
    ctl.open()                   # the meter gives up on closing (credit back)
    steps(ctl, hw, 1)
    assert ctl.position == POSITION_OPEN
    assert ctl.fault == VF_NOT_CLOSED, "the valve still cannot close"


def test_broken_feedback_while_idle_is_a_fault_and_position_unknown():
    ctl, hw, log = rig(valve_open=True)
    hw.world.valve.break_feedback()
    steps(ctl, hw, 1)
    assert faults(log) == [], "one odd read is not enough"
    steps(ctl, hw, 1)
    assert faults(log) == [VF_FEEDBACK + 256]
    steps(ctl, hw, 3)
    assert ctl.position == POSITION_UNKNOWN and ctl.fault == VF_NOT_OPEN
    assert hw.world.valve.state == OPEN, "the valve itself stays where it should"
    hw.world.valve.repair_feedback()
    steps(ctl, hw, 2)
    assert ctl.position == POSITION_OPEN and faults(log)[-1] == VF_CLEARED


def test_shorted_feedback_is_reported_as_a_feedback_fault():
    ctl, hw, log = rig(valve_open=True)
    hw.world.valve.short_feedback()
    ctl.close()
    steps(ctl, hw, 3)
    assert faults(log) == [VF_FEEDBACK + 256]


def test_valve_moved_by_hand_is_tamper_and_is_driven_back():
    ctl, hw, log = rig(valve_open=False)
    hw.world.valve.move_by_hand(OPEN)
    assert hw.world.valve.passes()
    steps(ctl, hw, 2)
    assert log.codes(codes.EV_TAMPER) == [codes.TAMPER_VALVE]
    steps(ctl, hw, 1)
    assert hw.world.valve.state == CLOSED and ctl.position == POSITION_CLOSED
    # and the other way round: a paying customer's valve shut by hand is reopened
    ctl.open()
    steps(ctl, hw, 1)
    hw.world.valve.move_by_hand(CLOSED)
    steps(ctl, hw, 3)
    assert log.codes(codes.EV_TAMPER) == [codes.TAMPER_VALVE] * 2
    assert hw.world.valve.state == OPEN


def test_one_closed_switch_is_enough_to_see_a_failed_close():
    ctl, hw, log = rig(feedback="closed", valve_open=True)
    ctl.close()
    steps(ctl, hw, 1)
    assert ctl.position == POSITION_CLOSED
    ctl.open()
    steps(ctl, hw, 1)
    assert ctl.position == POSITION_OPEN
    hw.world.valve.jam(OPEN)
    ctl.close()
    steps(ctl, hw, 3)
    assert faults(log) == [VF_NOT_CLOSED + 256]


def test_without_feedback_the_position_is_assumed():
    ctl, hw, log = rig(feedback="none", valve_open=True)
    hw.world.valve.jam(OPEN)
    ctl.close()
    steps(ctl, hw, 5)
    assert ctl.position == POSITION_CLOSED and faults(log) == []   # it cannot know
    assert ctl.actuations == 1


def test_motor_stops_on_the_limit_switch_irq_not_on_the_next_poll():
    ctl, hw, log = rig("motor")
    m = hw.world.valve
    ctl.open()
    assert hw.valve_open_pin.value() == 1
    steps(ctl, hw, 7)
    assert m.state == OPEN and ctl.position == POSITION_OPEN
    assert hw.valve_open_pin.value() == 0
    assert m.stall_us == 0, m.stall_us
    ctl.close()
    steps(ctl, hw, 7)
    assert m.state == CLOSED and ctl.position == POSITION_CLOSED and m.stall_us == 0


def test_motor_times_out_when_the_limit_never_comes():
    ctl, hw, log = rig("motor", timeout_ms=12_000, retries=1)
    m = hw.world.valve
    m.jam(CLOSED)
    edges = []
    hw.valve_open_pin.watch(lambda p, o, n: edges.append((n, hw.clock.now_ms())) if o != n else None)
    ctl.open()
    steps(ctl, hw, 11)
    assert hw.valve_open_pin.value() == 1 and faults(log) == []
    steps(ctl, hw, 13)
    t0 = edges[0][1]
    assert [(n, t - t0) for n, t in edges] == [(1, 0), (0, 12_000), (1, 12_000), (0, 24_000)]
    assert ctl.driver.timed_out
    assert faults(log) == [VF_NOT_OPEN + 256]
    assert hw.valve_open_pin.value() == 0 and hw.valve_close_pin.value() == 0


def test_motor_without_switches_runs_for_run_ms():
    ctl, hw, log = rig("motor", feedback="none", run_ms=8000)
    m = hw.world.valve
    ctl.open()
    steps(ctl, hw, 7)
    assert hw.valve_open_pin.value() == 1
    steps(ctl, hw, 1)
    assert hw.valve_open_pin.value() == 0
    assert m.state == OPEN and ctl.position == POSITION_OPEN
    assert 2_900_000 <= m.stall_us <= 3_000_000


def test_motor_reversal_coasts_first():
    ctl, hw, log = rig("motor", coast_ms=200)
    ctl.open()
    steps(ctl, hw, 2)
    seen = []
    hw.valve_close_pin.watch(lambda p, o, n: seen.append(hw.clock.now_us()) if n else None)
    t0 = hw.clock.now_us()
    ctl.close()
    assert seen == [t0 + 200_000]
    steps(ctl, hw, 4)
    assert hw.world.valve.state == CLOSED and hw.world.valve.shoot_through == 0


def test_motor_with_only_a_closed_switch():
    ctl, hw, log = rig("motor", feedback="closed", run_ms=6000)
    ctl.open()
    steps(ctl, hw, 7)
    assert hw.world.valve.state == OPEN and ctl.position == POSITION_OPEN
    ctl.close()
    steps(ctl, hw, 6)
    assert hw.world.valve.state == CLOSED and ctl.position == POSITION_CLOSED


class _Pin:
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, v=0):
        self.v = v

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def irq(self, handler=None, trigger=0):
        self.handler = handler


class _Clock:
    def ticks_ms(self):
        return 0

    def ticks_add(self, a, b):
        return a + b

    def ticks_diff(self, a, b):
        return a - b

    def delay_ms(self, ms):
        pass

    def time(self):
        return 0


def test_limit_switch_irq_handler_allocates_nothing():
    import micropython
    from valve import config
    from valve.feedback import Feedback
    from valve.motor import MotorValve
    a, b, fo, fc = _Pin(), _Pin(), _Pin(1), _Pin(0)
    drv = MotorValve(a, b, _Clock(), config({"type": "motor"}), Feedback(fo, fc, 0))
    drv.start(OPEN)
    assert a.v == 1
    fo.v = 0                        # the open limit switch closes
    h = fo.handler
    micropython.heap_lock()
    try:
        h(fo)
    finally:
        micropython.heap_unlock()
    assert a.v == 0 and b.v == 0 and drv.driving == 0
