# What the customer sees, read back from the HT1621 model's display RAM
# through the glass map: every page, card-tap results, cut-off and
# emergency credit, sleep and wake, and the tap-to-glass latency.
import asyncio

import codes
import display
import main
from display import pages
from display.ui import RESULT_MS
from simkit import make_meter, run, tap_in_task
from test_card_rig import meter_rig, user_card, signed_card, R
from card import lockout as L

T2 = {"v": 1, "b": [[1000, 350_000], [0, 700_000]]}   # 3.50/m3 to 1 m3, then 7.00


def _shown(hw, text, icons=None):
    lcd = hw.world.lcd
    assert lcd.lit, "glass dark"
    assert lcd.shows(text, icons), (lcd.decode(), text, icons)


def _page(d, hw, n):
    d.page = n
    d.refresh()
    return hw.world.lcd


def test_every_page_shows_the_meter_figures():
    m, hw = make_meter(tariff=T2, friendly_hours=[0, 0], friendly_days=[])
    d = display.attach(hw, m)
    m.apply_credit("card", 1, 1, 12_345_000)              # 123.45
    m.confirm()
    hw.world.flow.set_rate_lph(3000)                      # below the burst threshold
    run(m, hw, 1440)                                      # 1.2 m3: into block 2
    ml = m.volume.ml()
    assert 1_150_000 < ml < 1_250_000
    _page(d, hw, pages.BALANCE)
    bal = m.balance
    _shown(hw, pages.line("", "%d.%02d" % (bal // 100_000, bal // 1000 % 100)), ["valve", "money"])
    _page(d, hw, pages.VOLUME)
    _shown(hw, pages.line("", "%d.%03d" % (ml // 1_000_000, ml // 1000 % 1000)), ["valve", "m3"])
    _page(d, hw, pages.TOPUP)
    _shown(hw, "A  123.45", ["valve", "card", "money"])
    _page(d, hw, pages.TARIFF)
    _shown(hw, "b2   7.00", ["valve", "block", "money", "per-m3"])
    _page(d, hw, pages.TODAY)
    _shown(hw, pages.line("", "%d.%03d" % (ml // 1_000_000, ml // 1000 % 1000)), ["valve", "m3", "today"])
    _page(d, hw, pages.MONTH)
    _shown(hw, pages.line("", "%d.%03d" % (ml // 1_000_000, ml // 1000 % 1000)), ["valve", "m3", "month"])
    _page(d, hw, pages.VALVE)
    _shown(hw, "OPEn    ", ["valve"])
    _page(d, hw, pages.ALARMS)
    _shown(hw, "AL    --", ["valve"])
    _page(d, hw, pages.BATTERY)
    _shown(hw, "bAt   --", ["valve"])                      # the simulated board is mains-powered


def test_today_and_this_month_come_from_the_frozen_registers():
    m, hw = make_meter(friendly_hours=[0, 0], friendly_days=[])   # 2026-01-01 00:00 UTC
    d = display.attach(hw, m)
    m.apply_credit("card", 1, 1, 50_000_000)
    m.confirm()
    hw.world.flow.set_rate_lph(3000)
    run(m, hw, 600)                                       # 500 L on the first day
    hw.world.flow.set_rate_lph(0)
    run(m, hw, 86400 - 600, step_ms=60_000)               # past midnight: the day is frozen
    hw.world.flow.set_rate_lph(3000)
    run(m, hw, 120)                                       # 100 L on the second
    assert m.history.newest("d") >= 1
    _page(d, hw, pages.TODAY)
    _shown(hw, pages.line("", "0.100"), ["valve", "m3", "today"])
    _page(d, hw, pages.MONTH)
    _shown(hw, pages.line("", "0.600"), ["valve", "m3", "month"])


def test_alarm_and_battery_pages():
    class Cell:
        mv = 3280

        def millivolts(self):
            return self.mv
    m, hw = make_meter(leak_window_s=0)
    hw.battery = Cell()
    d = display.attach(hw, m)
    from metering import detect
    m.detector.active = detect.LEAK | detect.TAMPER | detect.BATTERY_LOW
    _page(d, hw, pages.ALARMS)
    _shown(hw, "AL 13 12", ["shut", "alarm", "batt"])
    _page(d, hw, pages.BATTERY)
    _shown(hw, "bAt  3.28", ["shut", "alarm", "batt"])


def test_button_cycles_pages_and_confirms_only_when_a_reopen_waits():
    m, hw = make_meter(friendly_hours=[0, 0], friendly_days=[])
    d = display.attach(hw, m)
    seen = []

    async def press(t, ms=200):
        hw.button.drive(0)
        for _ in range(ms // 50):
            await hw.clock.sleep_ms(50)
        hw.button.drive(1)
        await hw.clock.sleep_ms(100)

    async def scenario():
        t = asyncio.create_task(main.button_task(m, hw, display=d))
        for _ in range(3):
            await press(t)
            seen.append(d.page)
        m.apply_credit("card", 1, 1, 500_000)             # credit back: a reopen waits
        assert m.awaiting_confirm
        await press(t)
        seen.append(d.page)
        t.cancel()
    asyncio.run(scenario())
    assert seen == [pages.VALVE, pages.VOLUME, pages.TOPUP, pages.VALVE]
    assert m.want_open, "the press while a reopen waited confirmed it"
    _shown(hw, "OPEn    ", ["valve", "low"])


def test_tap_results_show_within_200_ms_of_the_tap():
    m, hw, s = meter_rig(friendly_hours=[0, 0], friendly_days=[])
    d = display.attach(hw, m)
    c, _ = user_card(amount=1_000_000, seq=1)
    code, lat = tap_in_task(m, hw, s, d, c)
    assert code == codes.ACCEPTED and 0 < lat <= 200_000, lat
    _shown(hw, "A   10.00", ["card", "money", "valve"])       # the tap confirmed the reopening
    code, lat = tap_in_task(m, hw, s, d, c)                 # the same credit again
    assert code == codes.USED and 0 < lat <= 200_000
    _shown(hw, "E     01", ["card", "valve"])
    m.apply_credit("mqtt", 1, 7, 2_000_000)                  # an online top-up meanwhile ...
    hw.clock.advance(RESULT_MS)
    d.step()
    check = signed_card(R.CARD_CHECK, {"k": "check", "r": 1, "n": 5, "x": hw.clock.time() + 86400})
    code, lat = tap_in_task(m, hw, s, d, check)             # ... is not this card's credit
    assert code == codes.ACCEPTED and 0 < lat <= 200_000, (code, lat)
    _shown(hw, "A    0.00", ["card", "money", "valve"])
    other, _ = user_card(uid=b"\x31\x32\x33\x34", meter_id="M000009")
    for _ in range(L.LOCK_AFTER):
        hw.clock.advance(RESULT_MS)                          # the last result has gone
        d.step()
        code, lat = tap_in_task(m, hw, s, d, other)         # no key of this meter opens it
        assert code == codes.FOREIGN and 0 < lat <= 200_000
        _shown(hw, "E     19", ["card", "valve"])
    code, lat = tap_in_task(m, hw, s, d, other)
    assert code == codes.LOCKED_OUT and 0 < lat <= 200_000
    _shown(hw, "E     10", ["card", "valve"])
    hw.clock.advance(RESULT_MS)
    d.step()
    _shown(hw, pages.line("", "30.00"), ["valve", "money"])   # back to the page


def test_a_card_for_another_meter_of_this_issuer_reads_wrong_meter():
    m, hw, s = meter_rig()
    d = display.attach(hw, m)
    d.tap(codes.WRONG_METER, m.log.seq)
    _shown(hw, "E     07", ["card", "shut"])


def test_cut_off_then_emergency_credit():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 1_000_000]]}, emergency=500_000,
                       friendly_hours=[0, 0], friendly_days=[], display_sleep_s=0)
    d = display.attach(hw, m)
    m.apply_credit("card", 1, 1, 200_000)                 # 2.00 at 10.00/m3: 200 L
    m.confirm()
    hw.world.flow.set_rate_lph(1800)                      # 0.5 L/s
    run(m, hw, 500)
    assert not m.want_open
    d.page = pages.VALVE
    d.step()
    _shown(hw, "OFF   01", ["shut", "low"])               # closed for credit (why 1)
    d.emergency(m.request_emergency())
    _shown(hw, "EC   5.00", ["money", "shut", "low", "emerg", "press"])
    d.emergency(m.request_emergency())                   # once per top-up cycle
    _shown(hw, "E     01", ["shut", "low", "emerg", "press"])


def test_sleeps_after_the_configured_time_and_wakes_on_button_or_tap():
    m, hw = make_meter(display_sleep_s=20)
    d = display.attach(hw, m)
    lcd = hw.world.lcd
    hw.clock.advance(19_000)
    d.step()
    assert lcd.lit
    hw.clock.advance(1_000)
    d.step()
    assert not lcd.lit and not lcd.osc and lcd.current_ua() == 5
    m.apply_credit("card", 1, 1, 300_000)                # figures change while asleep
    d.step()
    assert not lcd.lit
    seen = []
    lcd.on_frame = lambda l: seen.append((l.lit, l.text()))
    d.page = pages.VOLUME
    d.press()                                            # the first press only wakes it
    _shown(hw, pages.line("", "3.00"), ["shut", "low", "money", "press"])
    assert seen[-1] == (True, pages.line("", "3.00")) and not seen[0][0], \
        "the glass lights only once it holds the new page"
    assert d.page == pages.BALANCE
    hw.clock.advance(20_000)
    d.step()
    assert not lcd.lit
    d.tap(codes.CARD_GONE, m.log.seq)                               # a tap wakes it too
    _shown(hw, "E     16", ["card", "shut", "low", "press"])


def test_sleep_setting_goes_through_the_settings_table_and_is_in_force_at_once():
    m, hw = make_meter()
    d = display.attach(hw, m)
    assert m.configure("display_sleep_s", 3601, "repl")[0] == codes.RANGE
    assert m.configure("display_sleep_s", "30", "repl")[0] == codes.FORMAT
    assert m.configure("display_sleep_s", 0, "mqtt")[0] == codes.UNKNOWN, "not a remote setting"
    assert m.configure("display_sleep_s", 0, "repl")[0] == codes.ACCEPTED
    hw.clock.advance(3_600_000)
    d.step()
    assert hw.world.lcd.lit, "0: never sleeps"
    assert m.configure("display_sleep_s", 5, "repl")[0] == codes.ACCEPTED
    d.step()
    assert not hw.world.lcd.lit


def test_a_board_without_a_display_has_none():
    m, hw = make_meter(board_opts={"display": False})
    assert hw.display is None and main.attach_display(m, hw) is None
    assert len(main.user_tasks(m, hw, None)) == 1      # the button only


def _doc_rows(title):
    with open("docs/DISPLAY.md") as f:
        doc = f.read()
    part = doc[doc.index(title):]
    part = part[:part.index("\n#", 1)]
    rows = []
    for ln in part.split("\n"):
        if ln.startswith("| `"):
            rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_label_key_in_docs_is_the_code_table():
    rows = _doc_rows("### Label key: result codes")
    # every refusal the meter can answer has its row, in order, by its name
    assert [(r[0], r[1]) for r in rows] == [
        ("`E %02d`" % c, codes.RESULT_NAMES[c]) for c in range(1, len(codes.RESULT_NAMES))]
    assert pages.error(codes.WRONG_METER) == "E     07"
    alarms = _doc_rows("### Label key: alarms")
    assert [int(r[0].strip("`").split()[1]) for r in alarms] == [c for _, c in pages.ALARM_CODES]
    names = [codes.event_name(c) for _, c in pages.ALARM_CODES]
    assert names == ["leak", "burst", "tamper", "flow-while-closed", "sensor-fault", "low-battery"]
    valve = _doc_rows("### Label key: valve closed")
    assert [int(r[0].strip("`").split()[1]) for r in valve] == [
        codes.WHY_CREDIT, codes.WHY_COMMAND, codes.WHY_LEAK, codes.WHY_BURST, codes.WHY_TAMPER,
        codes.WHY_BATTERY, codes.WHY_SENSOR]
