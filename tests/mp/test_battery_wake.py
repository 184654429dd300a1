# The battery board's wake path: every wake is a fresh boot of the meter on
# the same plant (water, valve, ULP and its RTC memory), as after a deep
# sleep. The ULP program runs on the emulator throughout.
import boards
import main
import wake
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
from boards.unix_battery import Plant
from metering.ulpcount import W_COUNT, W_THRESHOLD
from meter import WHY_NONE

PRICE_L = 350      # config default: 350_000 units per m^3


def _cfg():
    # no friendly periods: the cut-off follows the credit alone
    return make_cfg(friendly_hours=[0, 0], friendly_days=[])


def _boot(plant, d):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    return main.assemble(hw, _cfg()), hw


def _first(plant, d, litres_of_credit):
    m, hw = _boot(plant, d)
    m.balance = litres_of_credit * PRICE_L
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    return _boot(plant, d)     # the boot after the top-up opens the valve


def test_ulp_threshold_closes_the_valve_when_credit_runs_out():
    plant, d = Plant(), fresh_dir("bw")
    m, hw = _first(plant, d, 30)
    ms = wake.work(m, hw)
    # 30 L of credit, 1 pulse/L: the ULP wakes at the next save (save_l, 10 L)
    # and at the credit's end, the earlier
    assert plant.ulp.word(W_THRESHOLD) & 0xFFFF == 10
    plant.flow.set_rate_lph(600)                           # a tap left open
    for litres in (10, 20, 30):
        plant.deepsleep(ms)
        assert plant.wake_reason == "ulp"
        m, hw = _boot(plant, d)                            # the wake: a fresh boot
        ms = wake.work(m, hw)
        assert m.volume.ml() == litres * 1000
        assert plant.ulp.word(W_THRESHOLD) & 0xFFFF == min(litres + 10, 30) or litres == 30
    assert m.balance == 0
    assert not m.want_open and plant.valve.state == 0    # closed by the wake
    # the 30th pulse closes the contact at 29.5 L: billing counts pulses
    assert 29_000 < plant.flow.delivered_ml() < 30_000


def test_timer_wake_with_no_flow_bills_nothing_twice():
    plant, d = Plant(), fresh_dir("bt")
    m, hw = _first(plant, d, 100)
    plant.flow.pour(5000, 500)
    plant.deepsleep(wake.work(m, hw))
    assert plant.wake_reason == "timer"
    for _ in range(3):
        m, hw = _boot(plant, d)
        plant.deepsleep(wake.work(m, hw))
    assert m.volume.ml() == 5000
    assert m.balance == 95 * PRICE_L


def test_reset_during_a_wake_loses_nothing_and_counts_nothing_twice():
    plant, d = Plant(), fresh_dir("br")
    m, hw = _first(plant, d, 100)
    plant.deepsleep(wake.work(m, hw))
    plant.flow.pour(7000, 700)
    plant.clock.advance(60_000)
    m, hw = _boot(plant, d)
    m.poll()                      # the 7 pulses taken into RAM ...
    assert m.volume.ml() == 7000
    # ... and the CPU resets before any save (watchdog, brown-out of the CPU
    # rail only): RTC memory and the ULP run on
    plant.flow.pour(2000, 700)
    plant.clock.advance(60_000)
    m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.volume.ml() == 9000
    m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.volume.ml() == 9000


def test_brown_out_keeps_the_saved_volume_and_counts_on_from_zero():
    plant, d = Plant(), fresh_dir("bb")
    m, hw = _first(plant, d, 100)
    plant.flow.pour(12000, 700)
    plant.clock.advance(120_000)
    wake.work(m, hw)
    assert m.volume.ml() == 12000
    plant.brown_out()              # RTC memory gone: the count restarts at 0
    m, hw = _boot(plant, d)
    assert hw.ulp_fresh
    assert plant.ulp.word(W_COUNT) & 0xFFFF == 0
    plant.flow.pour(3000, 700)
    plant.clock.advance(60_000)
    wake.work(m, hw)
    assert m.volume.ml() == 15000  # the saved 12 L, then 3 L on the new count


def test_pulses_left_is_never_later_than_the_credit():
    plant, d = Plant(), fresh_dir("bp")
    m, hw = _first(plant, d, 50)
    m.balance = 10 * PRICE_L - 1   # not quite 10 L
    assert wake.pulses_left(m) == 9
    m.want_open = False
    assert wake.pulses_left(m) > 1000   # closed: only to keep the count in range


def test_a_power_on_with_the_contact_closed_is_no_pulse():
    plant, d = Plant(), fresh_dir("bl")
    m, hw = _first(plant, d, 100)
    plant.flow.pour(1700, 600)     # stops with the contact closed (second half of pulse 2)
    plant.clock.advance(60_000)
    wake.work(m, hw)
    assert m.volume.ml() == 2000 and plant.reed.level(plant.clock.now_us()) == 0
    plant.brown_out()              # the count is reloaded with the contact still closed
    m, hw = _boot(plant, d)
    plant.clock.advance(60_000)
    wake.work(m, hw)
    assert m.volume.ml() == 2000   # the closed contact at load is not a closing
    plant.flow.pour(1000, 600)     # opens at 2.0 L, closes again at 2.5 L: one pulse
    plant.clock.advance(60_000)
    wake.work(m, hw)
    assert m.volume.ml() == 3000
