# One wake of a battery meter (docs/BATTERY.md §3).
#
# A deep-sleep wake is a fresh boot: main.assemble() has just restored the
# state, and the ULP pulse source resumed from the mark saved with it. This
# looks for a card (firmware/card/wakepoll.py), bills what the ULP counted
# in sleep, runs the credit policy and the valve, opens the reporting window
# when one is due (firmware/window.py), saves (the mark together with the
# volume it produced), tells the ULP when to wake the CPU again, and ends in
# deep sleep, the button armed or not (wakepoll.button_plan). Nothing here
# runs on a mains board.
import codes
from metering.ulpcount import ARM_MAX

_STEP_MS = const(20)          # valve pulses and settles are tens of ms
_VALVE_MAX_MS = const(15_000)  # a motor valve's whole travel, and more
_DAY_S = const(86400)
_MIN_SLEEP_S = const(60)
_LCD_UA = const(150)          # HT1621 on, typical at 3 V (docs/DISPLAY.md)
_FAIL_SLEEP_MS = const(600_000)   # a wake that failed tries again after 10 min


def pulses_left(meter):
    """Pulses until the credit is spent at the dearest block price: the ULP
    wakes the CPU no later than that (earlier costs one wasted wake). With
    the valve closed nothing is due: wake only to keep the count in range."""
    if not meter.want_open:
        return ARM_MAX
    money = meter.balance
    if meter.friendly(meter.clock.time()):
        money += max(0, meter.cfg["friendly_debt_max"] - meter.debt_friendly)   # no cut-off before the cap
    if money <= 0:
        return 1
    price = 0
    for _, p in meter.billing.tariff.blocks:
        price = p if p > price else price
    if price <= 0:
        return ARM_MAX
    ml = money * 1_000_000 // price       # prices are per m^3
    v = meter.volume
    n = ml * v.k_num // (1000 * v.k_den)
    return 1 if n < 1 else ARM_MAX if n > ARM_MAX else n


def pulses_to_save(meter):
    """Pulses until save_l more litres have flowed. The ULP's count lives in
    RTC memory, which a pulled cell or a brown-out loses: waking to save
    this often keeps what a pull can take unbilled to save_l litres, as
    on a mains meter, instead of all the water since the last wake."""
    v = meter.volume
    n = meter.cfg["save_l"] * v.k_num // v.k_den
    return n if n > 1 else 1


def _arm(meter):
    """The ULP's next wake: the credit's end or the next save, the earlier."""
    n = pulses_left(meter)
    s = pulses_to_save(meter)
    meter.pulses.wake_after(n if n < s else s)


def sleep_s(meter):
    """Until the day's registers close (local midnight) or the next
    reporting window, whichever comes first; at most a day."""
    now = meter.clock.time()
    end = meter.history.day_end
    s = end - now + 1 if end and end > now else _DAY_S
    w = meter.window
    if w is not None and w.next and w.next - now < s:
        s = w.next - now
    return _MIN_SLEEP_S if s < _MIN_SLEEP_S else _DAY_S if s > _DAY_S else s


def _settle(meter, hw):
    """Bill and run the policy, then drive the valve to rest. Returns the
    coil pulses this took (a move is one pulse; retries add more)."""
    meter.poll()
    v = meter.valve
    waited = 0
    while v is not None and v.busy and waited < _VALVE_MAX_MS:
        hw.clock.delay_ms(_STEP_MS)
        waited += _STEP_MS
        meter.poll()
    return 1 if waited else 0


def _window(meter, hw, make_link, ota=None):
    """The reporting window, if this wake opens one (firmware/window.py), or
    the update needs one now (ota.force: a switched image's trial, a
    recheck). Returns the radio's on-time in ms, or None when no window ran."""
    import window
    w = meter.window
    cfg = meter.cfg
    now = meter.clock.time()
    due = w is not None and w.due(hw.wake_reason, now, cfg["tz"])
    if not due and (ota is None or not ota.force):
        return None
    try:
        link = make_link(meter, hw)
    except Exception as e:  # noqa: BLE001 - no link is a meter that reports nothing, not a dead one
        print("MQTT link not started: %r" % e)
        link = None
    if ota is not None:
        ota = _ota_open(ota, link)
    ok, on_ms = window.run(meter, hw, link, ota) if link is not None else (False, 0)
    if w is None:
        return on_ms
    period = cfg["window_s"]
    w.done(ok, meter.clock.time(), period, window.offset_s(cfg["meter_id"], period), cfg["tz"])
    return on_ms


def _ota_attach(meter, hw, board):
    """The update's side of this wake (ota/battery.py): the boot-slot check
    at once, the rest in the window. A failure here leaves a meter without
    updates, never a wake that does not meter."""
    if hw.partitions is None:
        return None
    try:
        from ota import battery
        return battery.attach(meter, hw, board)
    except Exception as e:  # noqa: BLE001 - the update path is not the meter
        print("OTA not started: %r" % e)
        return None


def _ota_open(ota, link):
    if link is None:
        ota.no_link()
        return None
    try:
        return ota.open(link)
    except Exception as e:  # noqa: BLE001
        print("OTA not opened: %r" % e)
        return None


def _card(meter, hw, cards):
    """This wake's look for a card (a window of looks on a button wake).
    Returns its charge in uAs."""
    from card.wakepoll import polls
    from card.records import CARD_USER
    code, uas = polls(cards, hw, hw.wake_reason == "button")
    # as main.card_task: a user at the reader confirms reopening after a top-up
    if code in (codes.ACCEPTED, codes.USED) and cards.last[1] == CARD_USER:
        meter.confirm()
    return uas


def _screen(meter, hw):
    """The LCD at this wake. The driver's start switches the glass on, so at
    any wake but the button's it goes back to sleep at once; on a button
    wake the customer sees the balance, or why the valve is closed (OFF nn),
    from the first moment. Returns the Display, or None."""
    if hw.display is None:
        return None
    import display
    from display import pages
    d = display.attach(hw, meter)
    if hw.wake_reason != "button":
        hw.display.sleep()
        return None
    d.page = pages.BALANCE if meter.want_open else pages.VALVE
    d.refresh()
    return d


def _lcd_off(meter, hw, d, t0):
    """The glass was lit for this button wake (its card window and report
    window, some seconds): show the wake's outcome, then off before the
    deep sleep. Returns the glass's charge in uAs."""
    d.refresh()
    hw.display.sleep()
    return hw.clock.ticks_diff(hw.clock.ticks_ms(), t0) * _LCD_UA // 1000


def work(meter, hw, make_link=None, cards=None, board=None):
    """Check the boot slot (a board with OTA slots, board: its name), look
    for a card (cards: the card session, or None), bill, run the policy and
    the valve to rest, open the reporting window when one is due (only with
    make_link, the link's builder), save, arm the ULP. Returns the
    milliseconds to sleep."""
    t0 = hw.clock.ticks_ms()
    ota = _ota_attach(meter, hw, board)
    lcd = _screen(meter, hw)
    card_uas = 0
    if cards is not None:
        # first, while the reader is still on from the driver's start: a
        # credit tapped now reaches the policy and the valve of this wake
        card_uas = _card(meter, hw, cards)
    pulses = _settle(meter, hw)
    if hw.wake_reason == "button" and meter.awaiting_confirm:
        meter.confirm()                  # a press confirms a reopening, as main.button_task
        pulses += _settle(meter, hw)
    radio_ms = _window(meter, hw, make_link, ota) if make_link is not None else None
    if radio_ms is not None:
        pulses += _settle(meter, hw)     # a top-up in the window may reopen the valve
    if lcd is not None:
        card_uas += _lcd_off(meter, hw, lcd, t0)
    if meter.cell is not None:
        meter.cell.wake(meter.clock.time(), radio_ms, pulses, card_uas)
    meter.save()      # durable before the ULP is told anything new
    _arm(meter)
    return sleep_s(meter) * 1000


def _failed(meter, e):
    """Log the failure (event 34, arg 2), arm the ULP at the credit as it
    stands (or the next save), and sleep _FAIL_SLEEP_MS: nothing is saved, so the next wake
    takes the same pulses again from the saved mark."""
    meter.log.add(codes.EV_INTERNAL, 2)       # never raises
    try:
        print("wake error:", repr(e))
        _arm(meter)
    except Exception:  # noqa: BLE001 - the threshold armed before stays
        pass
    return _FAIL_SLEEP_MS


def cycle(meter, hw, make_link=None, cards=None, board=None):
    """One wake, then deep sleep. On a chip deepsleep() does not return (the
    next wake boots afresh); on the unix board it does, and the meter is
    returned to the simulator. A wake that fails (a bug) still sleeps: a
    CPU left awake would empty the cell in weeks."""
    try:
        ms = work(meter, hw, make_link, cards, board)
    except Exception as e:  # noqa: BLE001 - whatever it is, the cell comes first
        ms = _failed(meter, e)
    button = hw.button is not None
    if button:
        from card.wakepoll import button_plan
        day = (meter.clock.time() + meter.cfg["tz"]) // _DAY_S
        ms, button = button_plan(hw, ms, day)
    hw.deepsleep(ms, button)
    return meter
