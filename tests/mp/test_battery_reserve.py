# The valve's energy reserve on a battery meter (firmware/power.py,
# docs/BATTERY.md §8): the charge count warns at 10 % left, and at the
# reserve the valve closes whatever the credit, while the cell can still
# move it RESERVE_PULSES times. Every wake is a fresh boot on one Plant.
import boards
import codes
import main
import power
import wake
import card
from card import wakepoll
from card.keys import testing_meter_keys
from comms import codec
from display import glass as G
from display import pages
from meter import WHY_NONE, WHY_BATTERY
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
from boards.unix_battery import Plant

PRICE_L = 350


def _boot(plant, d):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    return main.assemble(hw, make_cfg(friendly_hours=[0, 0], friendly_days=[])), hw


def _drained_to(plant, d, left_uas, litres=100):
    """A meter with credit and its valve open, whose cell has left_uas left."""
    m, hw = _boot(plant, d)
    m.balance = litres * PRICE_L
    m.want_open, m.why_closed = True, WHY_NONE
    plant.deepsleep(wake.work(m, hw))
    m, hw = _boot(plant, d)
    m.cell.used = power.USABLE_UAS - left_uas    # the cell's years of service
    m.save()
    return _boot(plant, d)


def _records(outbox):
    out = []
    while True:
        recs = outbox.peek(16)
        if not recs:
            return out
        out.extend(codec.decode_record(r)[0] for r in recs)
        outbox.ack(recs)


def _events(m, code):
    return [e for e in m.log.since(0) if e[2] == code]


def test_at_the_reserve_the_valve_closes_with_credit_left_and_says_so():
    plant, d = Plant(), fresh_dir("rv")
    # one day of sleep and a wake more and the reserve is reached
    m, hw = _drained_to(plant, d, power.RESERVE_UAS + 1000)
    assert m.want_open and m.balance == 100 * PRICE_L
    plant.deepsleep(wake.work(m, hw))      # a day: the timer wake at midnight
    m, hw = _boot(plant, d)
    pulses0 = len(plant.valve.rises["close"])
    wake.work(m, hw)
    assert not m.want_open and m.why_closed == WHY_BATTERY
    assert plant.valve.state == 0 and len(plant.valve.rises["close"]) == pulses0 + 1
    assert m.balance == 100 * PRICE_L                 # the credit is kept
    ev = _events(m, codes.EV_LOW_BATTERY)
    assert [e[3] >> 8 for e in ev] == [power.LEVEL_LOW, power.LEVEL_RESERVE]
    assert ev[-1][3] & 0xFF == m.cell.level_pct()
    assert _events(m, codes.EV_VALVE_CLOSED)[-1][3] == WHY_BATTERY
    # what is left still moves the valve RESERVE_PULSES times
    assert power.USABLE_UAS - m.cell.used >= power.RESERVE_PULSES * power.VALVE_UAS
    # the display: OFF 07 and the battery icon; the uplink: why 7 and the cell
    assert pages.render(pages.VALVE, m, None, None)[0] == pages.line("OFF", "07")
    assert pages.status_icons(m) & G.BATT
    link = main.make_link(m, hw)
    link.telemetry()
    recs = _records(link.outbox)
    tele = [r for r in recs if r["kind"] == codec.TELE][-1]
    batt = [r for r in recs if r["kind"] == codec.BATT][-1]
    assert (tele["flags"] >> 1) & 15 == WHY_BATTERY and tele["bal"] == 100 * PRICE_L
    assert batt["pct"] == m.cell.level_pct() and batt["days"] == m.cell.days_left(tele["t"])
    # a top-up does not reopen it, nor do later wakes log the alarm again
    assert m.apply_credit("mqtt", 1, 1, 10_000) == codes.ACCEPTED
    for _ in range(3):
        plant.deepsleep(wake.work(m, hw))
        m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert not m.want_open and m.why_closed == WHY_BATTERY
    assert len(_events(m, codes.EV_LOW_BATTERY)) == 2


def test_the_low_warning_comes_once_and_keeps_the_water_on():
    plant, d = Plant(), fresh_dir("rl")
    m, hw = _drained_to(plant, d, power.USABLE_UAS * power.LOW_PCT // 100 + 1000)
    assert not _events(m, codes.EV_LOW_BATTERY)
    for _ in range(3):
        plant.deepsleep(wake.work(m, hw))
        m, hw = _boot(plant, d)
    wake.work(m, hw)
    ev = _events(m, codes.EV_LOW_BATTERY)
    assert [e[3] >> 8 for e in ev] == [power.LEVEL_LOW]
    assert m.want_open and plant.valve.state == 1
    assert pages.status_icons(m) & G.BATT


def test_a_new_cell_gives_the_water_back():
    plant, d = Plant(), fresh_dir("rn")
    m, hw = _drained_to(plant, d, power.RESERVE_UAS - 1)
    wake.work(m, hw)
    assert m.why_closed == WHY_BATTERY
    m.cell.fitted(plant.clock.time())      # the technician's battery change
    m.save()
    m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.cell.level() == 0 and m.cell.raised == 0
    # credit left: back to the credit policy, which waits for the customer
    # (reopen "confirm", the default) ...
    assert m.awaiting_confirm and not m.want_open
    assert m.confirm() == codes.ACCEPTED            # ... a press, or a tap
    wake.work(m, hw)
    assert m.want_open and plant.valve.state == 1


def _lit_ms(frames):
    """How long the glass was lit, from (time us, lit) after each frame."""
    on, total = None, 0
    for t, lit in frames:
        if lit and on is None:
            on = t
        elif not lit and on is not None:
            total += t - on
            on = None
    return total // 1000


def test_a_press_shows_why_the_valve_is_closed_and_the_glass_sleeps_again():
    plant, d = Plant(), fresh_dir("rd")
    m, hw = _drained_to(plant, d, power.RESERVE_UAS - 1)
    ms = wake.work(m, hw)                    # the cut-off, at a wake nobody looks at
    assert m.why_closed == WHY_BATTERY and not plant.lcd.lit
    frames, seen = [], []

    def frame(lcd):
        frames.append((plant.clock.now_us(), lcd.lit))
        seen.append(lcd.lit and lcd.shows(pages.line("OFF", "07")) and "batt" in lcd.icons())
    plant.lcd.on_frame = frame
    plant.press_button(1000)
    plant.deepsleep(ms)
    m, hw = _boot(plant, d)
    assert hw.wake_reason == "button"
    wake.work(m, hw, None, card.attach(hw, m, testing_meter_keys(m.cfg["meter_id"])))
    assert any(seen)                         # lit: OFF 07 and the battery icon
    assert not plant.lcd.lit                 # dark again before the deep sleep
    assert _lit_ms(frames) >= wakepoll.WINDOW_MS    # through the press's card window
    del frames[:]
    plant.deepsleep(wake.work(m, hw))        # a timer wake: the driver's start lights
    m, hw = _boot(plant, d)                  # the glass, and the wake puts it out at once
    wake.work(m, hw)
    assert not plant.lcd.lit and _lit_ms(frames) < 20
