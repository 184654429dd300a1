# Card reader figures of a battery meter's wakes (docs/BATTERY.md §10), on
# the unix battery board (MicroPython unix port):
#
#   .venv/bin/micropython bench/bench_card_wake.py      (from the repository root)
#
# MODELLED: the reader's time with its clock running and with its field on
# comes from the MFRC522 model (boards/unix/mfrc522_model.py usage(): SPI at
# 4 MHz, air time, the crystal's assumed 300 us start-up after the hard
# reset); the CPU's time awake and in light sleep from the plant. Charge at
# the MFRC522 datasheet's Table 1 typical currents (13.5 mA with the clock
# running, + 60 mA with the field on), the ESP32's 40 mA awake and 0.8 mA in
# light sleep; the boot itself (24 mAs) is the wake's, not the reader's.
# Beside each, what the meter's own charge count (firmware/power.py, via
# card/wakepoll.py) adds for it: it must not be less.
import sys

for p in ("firmware", ".", "tests/mp", "build/lib"):
    if p not in sys.path:
        sys.path.append(p)

import power
import wake
from batterykit import boot, open_with, place_after, reader_and_naps_uas, valve_pulses
from boards.unix_battery import Plant
from mptest import fresh_dir
from test_card_rig import user_card


def measure(plant, d, press, place_after_ms=None):
    """One wake (after a press or not); its reader and CPU figures."""
    m, hw, s = boot(plant, d)
    if press:
        plant.press_button(60_000)
    wake.cycle(m, hw, None, s)              # the sleep before the wake measured
    a0, f0, p0 = plant.reader.usage()
    l0, w0 = plant.light_ms, plant.awake_ms
    m, hw, s = boot(plant, d)
    used0, last0 = m.cell.used, m.cell.last
    pulses0 = valve_pulses(plant)
    if place_after_ms is not None:
        c, _ = user_card(amount=100_000, seq=place_after_ms)
        if place_after_ms == 0:
            plant.reader.place(c)
        else:
            plant.clock.delay_ms(0)
            place_after(plant, c, place_after_ms)
    wake.cycle(m, hw, None, s)
    a, f, p = plant.reader.usage()
    plant.reader.remove()
    # what the cell's count added for the card: all of this wake's count
    # but the boot, the sleep before it and the coil pulses
    pulses = valve_pulses(plant) - pulses0
    counted = (m.cell.used - used0 - power.WAKE_UAS - pulses * power.VALVE_UAS
               - (m.cell.last - last0) * power.SLEEP_UA_X10 // 10)
    return p - p0, a - a0, f - f0, plant.light_ms - l0, plant.awake_ms - w0, s.last, counted


def main_():
    d = fresh_dir("bcw")
    plant = Plant()
    m, hw, s = boot(plant, d)
    open_with(m, 1000)
    wake.cycle(m, hw, None, s)
    print("card reader on a battery wake (modelled; docs/BATTERY.md §10)")
    rows = (("timer wake, no card", False, None), ("button wake, no card (a whole window)", True, None),
            ("button wake, card held at 2 s", True, 2000), ("timer wake, card on the reader", False, 0))
    for name, press, at in rows:
        looks, clock_us, field_us, light, awake, last, counted = measure(plant, d, press, at)
        drawn = reader_and_naps_uas(clock_us, field_us, light)
        print("  %-38s %2d looks, reader clock %6.2f ms, field %6.2f ms, light sleep %5d ms, "
              "CPU awake %4d ms; reader and naps %5.2f mAs (the cell's count adds %5.2f)%s"
              % (name, looks, clock_us / 1000, field_us / 1000, light, awake, drawn / 1000, counted / 1000,
                 "" if last is None else ", result %d" % last[0]))
    floor_ua = 5
    print("  between wakes: hard power-down, %d uA at most (datasheet Table 1): %.2f mAs a day, "
          "the reader's largest share" % (floor_ua, floor_ua * 86.4))
    print("  (the boot, 24 mAs, is the wake's; the cell's count charges a look's duration at 114 mA)")

main_()
