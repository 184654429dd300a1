# Card taps on the battery board: the reader is powered only for its looks
# (hard power-down between wakes, soft power-down inside a card window), and
# a credit tapped at a wake is applied exactly once, through the same card
# session and ledger as on a mains meter. Every wake is a fresh boot on the
# same plant (water, valve, ULP, reader and the cards at it).
import codes
import wake
from mptest import fresh_dir
from boards.unix_battery import Plant
from card import wakepoll
from test_card_rig import user_card, card_status
from batterykit import PRICE_L, boot as _boot, open_with, place_after as _place_after

AMOUNT = 1_000_000


def _sleep(plant, m, hw, s, press_after_ms=None):
    ms = wake.work(m, hw, cards=s)
    plant.press_button(press_after_ms)
    plant.deepsleep(ms)


def _first(plant, d, litres, press_after_ms=None):
    m, hw, s = _boot(plant, d)
    open_with(m, litres)
    _sleep(plant, m, hw, s, press_after_ms)


def test_the_reader_is_in_hard_power_down_whenever_the_cpu_sleeps():
    plant, d = Plant(), fresh_dir("bc0")
    assert plant.reader.power_state() == "hard"      # the board's pull-down, from power-on
    m, hw, s = _boot(plant, d)
    assert s is not None                              # the driver's start is the hard reset
    _sleep(plant, m, hw, s)
    assert plant.reader.power_state() == "hard"
    assert plant.reader.polls == 1                    # one look at this wake, no window


def test_a_card_tapped_at_a_button_wake_is_applied_once_and_confirmed():
    plant, d = Plant(), fresh_dir("bc1")
    _first(plant, d, 100, press_after_ms=3_600_000)     # the customer presses the button
    assert plant.wake_reason == "button"
    c, h = user_card(amount=AMOUNT, seq=1)
    m, hw, s = _boot(plant, d)
    looks0, light0, t0 = plant.reader.polls, plant.light_ms, plant.clock.now_ms()
    _place_after(plant, c, 2000)                         # ... and holds the card there 2 s later
    _sleep(plant, m, hw, s, press_after_ms=3_600_000)
    assert s.last[0] == codes.ACCEPTED
    assert m.balance == 100 * PRICE_L + AMOUNT
    assert card_status(c, h)[0] is not None          # the return record is on the card
    assert 8 <= plant.reader.polls - looks0 <= 10    # a look every 250 ms until the card came
    assert plant.light_ms - light0 >= 2000 - wakepoll.POLL_MS   # the CPU napped between looks
    assert plant.reader.power_state() == "hard"
    # the card stays on the reader: every later wake (a button wake, then a
    # timer wake) reads it again and never applies it again
    for press in (None, None):
        assert plant.clock.now_ms() - t0 >= 2000
        m, hw, s = _boot(plant, d)
        _sleep(plant, m, hw, s, press)
        assert s.last[0] == codes.USED
        assert m.balance == 100 * PRICE_L + AMOUNT
    assert plant.wakes.get("timer", 0) >= 1


def test_a_timer_wake_looks_once_and_a_button_wake_without_card_ends_after_its_window():
    plant, d = Plant(), fresh_dir("bc2")
    _first(plant, d, 100)
    assert plant.wake_reason == "timer"
    m, hw, s = _boot(plant, d)
    n = plant.reader.polls
    _sleep(plant, m, hw, s, press_after_ms=60_000)
    assert plant.reader.polls - n == 1
    assert plant.wake_reason == "button"
    m, hw, s = _boot(plant, d)
    n, light = plant.reader.polls, plant.light_ms
    _sleep(plant, m, hw, s)
    assert plant.reader.polls - n == 1 + wakepoll.WINDOW_MS // wakepoll.POLL_MS
    assert plant.light_ms - light == wakepoll.WINDOW_MS
    active, field, _ = plant.reader.usage()
    # the reader ran for the looks only: under 2 ms a look, the field less
    assert active < 2000 * plant.reader.polls and field <= active, (active, field)


def test_a_credit_tapped_at_a_wake_reopens_the_valve_in_the_same_wake():
    plant, d = Plant(valve_open=False), fresh_dir("bc3")
    m, hw, s = _boot(plant, d)
    m.balance = 0
    m.want_open = False
    m.save()
    _sleep(plant, m, hw, s)
    assert plant.valve.state == 0
    c, _ = user_card(amount=AMOUNT, seq=1)
    plant.reader.place(c)
    m, hw, s = _boot(plant, d)
    pulses0 = len(plant.valve.rises["open"]) + len(plant.valve.rises["close"])
    _sleep(plant, m, hw, s)
    assert s.last[0] == codes.ACCEPTED and m.balance == AMOUNT
    assert m.want_open and plant.valve.state == 1
    assert len(plant.valve.rises["open"]) + len(plant.valve.rises["close"]) == pulses0 + 1   # one move


