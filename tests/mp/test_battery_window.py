# The reporting windows of a battery meter (firmware/window.py): when they
# open, and what a window costs when the broker is not there. The window
# against the real broker: tests/host/test_battery_radio.py.
import boards
import codes
import main
import wake
import window
from window import Schedule
from simkit import make_cfg
from mptest import fresh_dir, raises
from ulpkit import binary
from boards.unix_battery import Plant
from meter import WHY_NONE

DAY = 86400
T0 = 1767225600          # 2026-01-01 00:00 UTC, the Plant's default start


def test_windows_are_spread_by_meter_id_and_fall_on_their_slot():
    offs = [window.offset_s("M%06d" % i, DAY) for i in range(200)]
    assert all(3600 <= o < 5 * 3600 and o % 60 == 0 for o in offs)   # 01:00-05:00 local
    assert len(set(offs)) > 100                                      # not all in one minute
    o = window.offset_s("M000123", DAY)
    for tz in (0, 3600, -5 * 3600):
        for now in (T0, T0 + 1, T0 + o - tz, T0 + 5 * DAY + 777):
            t = window.next_slot(now, DAY, o, tz)
            assert now < t <= now + DAY and (t + tz - o) % DAY == 0
    hourly = window.offset_s("M000123", 3600)
    assert hourly == o % 3600
    t = window.next_slot(T0, 3600, hourly, 0)
    assert T0 < t <= T0 + 3600 and (t - hourly) % 3600 == 0


def test_a_window_opens_on_its_time_at_power_up_and_for_a_few_button_presses():
    w = Schedule()
    w.next = T0 + 5000
    assert not w.due("timer", T0 + 4999, 0) and not w.due("ulp", T0 + 10, 0)
    assert w.due("timer", T0 + 5000, 0) and w.due("ulp", T0 + 6000, 0)
    assert w.due("power", T0, 0)                          # the cell fitted, or back after a cut
    assert w.due("timer", w.next - DAY - 1, 0)            # the clock set back: not a day's silence more
    w.next = T0 + DAY - 1                   # the next scheduled window: tonight
    w.last = T0 - 3600
    presses = []
    for i in range(6):
        t = T0 + 600 + i * 1800
        presses.append(w.due("button", t, 0))
        if presses[-1]:
            w.last = t                          # that window ended at once
    assert presses == [True, True, True, True, False, False]   # 4 a day: the cell is not the customer's to empty
    w.next = T0 + DAY + 3600
    w.last = T0 + DAY + 100
    assert not w.due("button", T0 + DAY + 200, 0)        # within 30 min of the last window
    assert w.due("button", T0 + DAY + 100 + 1800, 0)     # a new day, a new allowance
    raises(ValueError, w.load, [1, 2, 3, -4, 0])
    raises(ValueError, w.load, [1, 2, 3])


def _boot(plant, d, **cfg):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    c = make_cfg(friendly_hours=[0, 0], friendly_days=[],
                 mqtt={"host": "127.0.0.1", "port": 9, "tls": False, "keepalive": 60,
                       "timeout_ms": 2000, "backoff_max_s": 2}, **cfg)
    return main.assemble(hw, c), hw


def test_without_a_broker_a_window_gives_up_and_retries_twice_then_waits_for_its_slot():
    off = window.offset_s(make_cfg()["meter_id"], DAY)
    start = T0 + off + 10                    # just after the day's slot
    plant, d = Plant(start=start), fresh_dir("bwn")
    m, hw = _boot(plant, d)
    opened = []                              # (when, radio on ms) of each window
    while plant.clock.time() < start + DAY + 600:
        used = m.cell.used
        t, t_ms = plant.clock.time(), plant.clock.now_ms()
        due = m.window.due(hw.wake_reason, t, 0)
        ms = wake.work(m, hw, main.make_link)
        if due:
            on = plant.clock.now_ms() - t_ms
            opened.append((t, on))
            assert m.cell.used - used >= on * 120     # the radio's charge is counted
        plant.deepsleep(ms)
        m, hw = _boot(plant, d)
    # a broker that never answers keeps the radio on for CONNECT_S, no longer
    assert all(window.CONNECT_S * 1000 <= on < window.CONNECT_S * 1000 + 1000 for _, on in opened)
    # the power-on window, two retries an hour apart, then the next day's slot
    times = [t for t, _ in opened]
    assert len(times) == 4, times
    assert times[0] == start
    assert 3600 <= times[1] - times[0] <= 3600 + 30 and 3600 <= times[2] - times[1] <= 3600 + 30
    assert times[3] == start - 10 + DAY
    assert m.window.fails == 4
    # what the windows could not send waits in the outbox for the next one
    link = main.make_link(m, hw)
    assert link.outbox.count >= 8        # a telemetry and a battery record per window


def test_a_wake_that_fails_still_sleeps_and_the_next_one_bills_it_all():
    plant, d = Plant(), fresh_dir("bwf")
    m, hw = _boot(plant, d)
    m.balance = 100 * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    plant.deepsleep(wake.work(m, hw))
    plant.flow.pour(5000, 600)
    plant.clock.advance(3_600_000)
    # a bug in the wake (here a period of 0 that config.load would never let
    # through): the wake logs event 34 and sleeps 10 min rather than stay awake
    m, hw = _boot(plant, d, window_s=0)
    slept = plant.sleep_ms
    assert wake.cycle(m, hw, main.make_link) is m
    assert [e[3] for e in m.log.since(0) if e[2] == codes.EV_INTERNAL] == [2]
    assert plant.wake_reason == "timer" and plant.sleep_ms - slept == 600_000
    m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.volume.ml() == 5000 and m.balance == 95 * 350   # the pulses once, not lost
