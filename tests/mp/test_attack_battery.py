# Attacks a customer can make on a battery meter's cell and wake path
# (docs/SECURITY.md, "Battery meter"). Every boot is the firmware's own wake
# (wake.cycle: card look, billing, valve, the button's plan for the next
# sleep) on the unix battery plant, on virtual time.
import power
import wake
from batterykit import PRICE_L, boot, open_with, reader_and_naps_uas
from mptest import fresh_dir
from boards.unix_battery import Plant
from card import wakepoll
from test_card_rig import user_card, card
import codes

DAY_MS = 86_400_000


def _meter(d):
    """A meter with credit, its first wake done. Returns its plant."""
    plant = Plant()
    m, hw, s = boot(plant, d)
    open_with(m, 1000)
    wake.cycle(m, hw, None, s)
    return plant


def _live(plant, d, ms, max_boots, press_every_ms=None):
    """Boot and sleep, wake after wake, for ms of virtual time (or until
    max_boots). Returns the boots."""
    end = plant.clock.now_ms() + ms
    boots = 0
    m = None
    while plant.clock.now_ms() < end and boots < max_boots:
        if press_every_ms is not None:
            plant.press_button(press_every_ms)
        m, hw, s = boot(plant, d)
        wake.cycle(m, hw, None, s)
        boots += 1
    return boots, m


def _charge_uas(plant):
    """What the plant drew, from its own counts, at the budget's currents:
    a boot, the CPU awake, light sleep, the reader running and its field."""
    active, field, _ = plant.reader.usage()
    return plant.boots * power.WAKE_UAS + plant.awake_ms * 40 + reader_and_naps_uas(active, field, plant.light_ms)


def test_attack_holding_the_button_down_all_day_costs_little():
    d0, d = fresh_dir("ab0"), fresh_dir("ab1")
    quiet = _meter(d0)
    _live(quiet, d0, DAY_MS, 100)
    plant = _meter(d)
    plant.hold_button(True)      # a weight on the button (EXT1 wakes on the level)
    boots, m = _live(plant, d, DAY_MS, 100)
    assert boots < 100, "the held button wakes the meter again and again"
    # one button wake, then the held button is not armed: a check every 30 min
    assert plant.wakes.get("button", 0) <= 1
    assert boots <= 24 * 3600 // wakepoll.HELD_CHECK_S + 2
    extra = _charge_uas(plant) - _charge_uas(quiet)
    assert extra < 1_500_000, extra        # < 1.5 As a day: < 18 uA on average
    plant.hold_button(False)     # let go: the button works again within 30 min
    _live(plant, d, 1, 2)
    plant.press_button(60_000)
    m, hw, s = boot(plant, d)
    wake.cycle(m, hw, None, s)
    assert plant.wake_reason == "button"


def test_attack_pressing_the_button_over_and_over_opens_a_bounded_number_of_card_windows():
    d = fresh_dir("ab2")
    plant = _meter(d)
    light = plant.light_ms
    _live(plant, d, DAY_MS // 2, 200, press_every_ms=60_000)   # a gadget pressing every minute
    assert plant.wakes.get("button", 0) == wakepoll.BUTTON_WAKES_PER_DAY
    assert plant.light_ms - light == wakepoll.BUTTON_WAKES_PER_DAY * wakepoll.WINDOW_MS
    _live(plant, d, DAY_MS, 200, press_every_ms=60_000)        # the next day: a fresh budget
    assert plant.wakes.get("button", 0) <= 3 * wakepoll.BUTTON_WAKES_PER_DAY


def test_attack_a_card_left_on_the_reader_keeps_nothing_awake():
    d0, d = fresh_dir("ab3"), fresh_dir("ab4")
    quiet = _meter(d0)
    plant = _meter(d)
    c, _ = user_card(amount=500_000, seq=1)
    plant.reader.place(c)
    foreign = card(b"\x99\x88\x77\x66")          # a card no key of ours opens
    for p, dd in ((quiet, d0), (plant, d)):
        p.press_button(60_000)
        _live(p, dd, DAY_MS, 100)
    # the card ends the window at its first look; it causes no wake of its
    # own (there is no card-detect input): the same wakes as without it
    assert plant.boots == quiet.boots and plant.wakes == quiet.wakes
    assert plant.light_ms == 0 < quiet.light_ms
    plant.reader.remove(c)
    plant.reader.place(foreign)                  # whatever the card's result
    plant.press_button(60_000)
    _, m = _live(plant, d, DAY_MS, 100)
    assert plant.light_ms == 0
    assert m.balance <= 1000 * PRICE_L + 500_000   # applied once, at most
    active, _, _ = plant.reader.usage()
    assert active < 300_000, active                 # < 0.3 s of reader time in two days


def _counted_and_drawn(plant, d, press):
    """One wake (after a press or not): what the cell's count added for its
    card looks, and what the window's naps and the reader drew."""
    m, hw, s = boot(plant, d)
    if press:
        plant.press_button(60_000)
    wake.cycle(m, hw, None, s)
    m, hw, s = boot(plant, d)
    used0, t0 = m.cell.used, m.cell.last
    light0, (active0, field0, _) = plant.light_ms, plant.reader.usage()
    wake.cycle(m, hw, None, s)
    m, hw, s = boot(plant, d)
    wake.cycle(m, hw, None, s)                   # the next wake counts the sleep after it
    active, field, _ = plant.reader.usage()
    drawn = reader_and_naps_uas(active - active0, field - field0, plant.light_ms - light0)
    counted = m.cell.used - used0 - 2 * power.WAKE_UAS - (m.cell.last - t0) * power.SLEEP_UA_X10 // 10
    return counted, drawn, plant.light_ms - light0


def test_attack_draining_the_cell_is_counted_so_the_valve_reserve_holds():
    d = fresh_dir("ab5")
    plant = _meter(d)
    counted, drawn, light = _counted_and_drawn(plant, d, True)   # a card window, no card
    assert light == wakepoll.WINDOW_MS
    # the count never runs behind what a drain costs, so the reserve
    # (power.RESERVE_UAS) closes the valve while a close is still possible
    assert drawn <= counted <= drawn * 3 // 2, (counted, drawn)
    c, _ = user_card(amount=500_000, seq=1)
    plant.reader.place(c)                        # a card left on the reader: a tap at every wake
    counted, drawn, _ = _counted_and_drawn(plant, d, False)
    assert drawn <= counted <= drawn * 2, (counted, drawn)


def test_attack_pulling_the_battery_is_logged_for_the_head_end():
    d = fresh_dir("ab6")
    plant = _meter(d)

    def ups(m):
        return [e[3] for e in m.log.recent(50) if e[2] == codes.EV_POWER_UP]

    m, hw, s = boot(plant, d)
    before = ups(m)
    wake.cycle(m, hw, None, s)                   # a deep-sleep wake: no power-up
    m, hw, s = boot(plant, d)
    assert ups(m) == before
    plant.brown_out()                            # the cell pulled and put back
    m, hw, s = boot(plant, d)
    assert ups(m) == before + [1]
    plant.cpu_reset()
    m, hw, s = boot(plant, d)
    assert ups(m) == before + [1, 2]
