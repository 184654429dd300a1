# Display figures, from the simulated board (MicroPython unix port):
#
#   MICROPYPATH=.frozen:firmware:.:tests/mp:build/lib .venv/bin/micropython bench/bench_display.py
#
# Times are MODELLED on the SimClock: the HT1621 driver waits HALF_US (4 us)
# in each half of every WR clock, so a bit costs 8 us (125 kHz, under the
# datasheet's 150 kHz write-mode limit at 3 V), and the model latches a
# nibble at the WR edge that completes it. Not included: MicroPython's own
# time per pin write on the ESP32 (a few us per Pin.value() call), which
# only stretches each bit. Power: the HT1621 datasheet's D.C.
# characteristics at VDD = 3 V, no load (docs/DISPLAY.md cites them).
import asyncio
import gc
import sys

for p in ("firmware", ".", "tests/mp"):
    if p not in sys.path:
        sys.path.append(p)

import codes
import main
from boards.unix import ht1621_model as M
from display import pages


def bus(model, clock, fn):
    c, t = model.clocks, clock.now_us()
    fn()
    return model.clocks - c, clock.now_us() - t


def tap_latency():
    from test_card_rig import meter_rig, user_card
    from simkit import tap_in_task
    import display
    m, hw, s = meter_rig(friendly_hours=[0, 0], friendly_days=[])
    d = display.attach(hw, m)
    out = []
    for code_want, card in ((codes.ACCEPTED, user_card(amount=1_000_000, seq=1)[0]),
                            (codes.USED, None),
                            (codes.FOREIGN, user_card(uid=b"\x31\x32\x33\x34", meter_id="M000009")[0])):
        card = card or out[-1][2]
        code, latency_us = tap_in_task(m, hw, s, d, card)
        assert code == code_want, (code, code_want)
        out.append((codes.result_name(code), latency_us, card))
    return out


def page_costs():
    from simkit import make_meter
    import display
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 12_345_000)
    d = display.attach(hw, m)
    lcd, clock = hw.world.lcd, hw.clock
    rows = []
    scr = hw.display
    rows.append(("init (4 commands)", bus(lcd, clock, scr._lcd.init)))

    def full():
        scr._stale = True
        d.refresh()
    rows.append(("whole RAM (32 nibbles)", bus(lcd, clock, full)))
    prev = d.page
    for n in range(1, pages.COUNT):
        d.page = n
        rows.append(("page %d -> %d (changed nibbles)" % (prev, n), bus(lcd, clock, d.refresh)))
        prev = n
    d.page = pages.BALANCE
    d.refresh()
    m.balance -= 1000          # one cent less: the last digit changes
    rows.append(("balance -0.01 (refresh)", bus(lcd, clock, d.refresh)))
    rows.append(("unchanged refresh", bus(lcd, clock, d.refresh)))
    rows.append(("sleep (LCD OFF, SYS DIS)", bus(lcd, clock, scr.sleep)))
    rows.append(("wake (whole RAM, SYS EN, LCD ON)", bus(lcd, clock, scr.wake)))
    return rows


def ram():
    """Heap the display takes: its modules (from source) and its objects,
    added to a meter built without one. Run first, before anything else
    imports them."""
    from simkit import make_meter
    m, hw = make_meter(board_opts={"display": False})
    gc.collect()
    free1 = gc.mem_free()
    from display.ht1621 import HT1621
    from display.segment import SegmentScreen
    from display.glass import SEG
    from boards.unix.pins import SimPin
    import display
    scr = SegmentScreen(HT1621(SimPin("cs", SimPin.OUT), SimPin("wr", SimPin.OUT),
                               SimPin("d", SimPin.OUT), hw.clock.delay_us), SEG)
    hw.display = scr
    d = display.attach(hw, m)
    d.refresh()
    gc.collect()
    return free1 - gc.mem_free()


def power():
    on, on_max, asleep = M.IDD_ON_UA, M.IDD_ON_MAX_UA, M.ISTB_MAX_UA
    rows = []
    for wakes, awake_s in ((0, 0), (10, 30), (50, 30)):
        t_on = wakes * awake_s
        uas = on * t_on + asleep * (86400 - t_on)          # uA * s per day
        rows.append((wakes, awake_s, uas // 3600))           # uAh per day
    return on, on_max, asleep, rows


disp = ram()
print("HT1621 display: bus cost (WR clocks, modelled time at 8 us a bit)")
for name, (clocks, us) in page_costs():
    print("  %-34s %4d clocks  %6d us" % (name, clocks, us))
print("card tap end -> result latched in the display RAM (card task, simulated clock;")
print("  an accepted user card first reopens the valve: its 50 ms coil pulse comes first)")
for name, lat, _ in tap_latency():
    print("  %-10s %6d us   (bound: 200 000 us)" % (name, lat))
print("heap for the display, modules from source and objects (unix port, 64-bit): %d bytes" % disp)
on, on_max, asleep, rows = power()
print("power at 3 V (datasheet): awake %d uA typ (%d max), asleep (SYS DIS) <= %d uA" % (on, on_max, asleep))
for wakes, awake_s, uah in rows:
    print("  %4d wakes/day x %2d s awake: %5d uAh/day (awake %d s, asleep at the standby maximum)"
          % (wakes, awake_s, uah, wakes * awake_s))
print("  always on: %d uAh/day" % (on * 24))
