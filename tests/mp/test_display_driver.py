# The HT1621 driver against the bus-level controller model: frames, bit
# order, successive-address writes, timing, sleep, and a driver bug the
# model must catch.
from boards.unix.clock import SimClock
from boards.unix.pins import SimPin
from boards.unix.ht1621_model import HT1621Model
from display import ht1621
from display.ht1621 import HT1621
from display.segment import SegmentScreen
from display import glass as G


def _rig(driver=HT1621, half_us=ht1621.HALF_US):
    clock = SimClock()
    cs, wr, data = SimPin("cs", SimPin.OUT, value=1), SimPin("wr", SimPin.OUT, value=1), SimPin("d", SimPin.OUT)
    model = HT1621Model(clock, cs, wr, data, G.SEG)
    return clock, model, driver(cs, wr, data, clock.delay_us, half_us)


def test_init_sends_the_datasheet_commands_and_lights_the_glass():
    _, model, lcd = _rig()
    assert not model.lit, "power-on reset: SYS DIS, LCD OFF"
    lcd.init()
    assert model.commands == [ht1621.SYS_EN, ht1621.RC_256K, ht1621.BIAS_THIRD_4COM, ht1621.LCD_ON]
    assert model.lit and model.frames == 1
    assert model.clocks == 3 + 4 * 9, "one ID, then four 9-bit commands"
    assert model.timing_errors == 0 and model.bad_frames == 0


def test_successive_address_write_lands_nibbles_in_order():
    _, model, lcd = _rig()
    lcd.init()
    buf = bytearray(range(16)) + bytearray(range(15, -1, -1))
    lcd.write(5, buf, 3, 9)
    assert bytes(model.ram[5:11]) == bytes(buf[3:9])
    assert model.ram[4] == 0 and model.ram[11] == 0
    lcd.write(30, buf, 0, 4)             # the address wraps at 32
    assert list(model.ram[30:32]) + list(model.ram[0:2]) == [0, 1, 2, 3]


def test_sleep_and_wake_power_the_chip_down_and_up():
    _, model, lcd = _rig()
    lcd.init()
    assert model.current_ua() == 150
    lcd.sleep()
    assert not model.lit and not model.osc and model.current_ua() == 5
    lcd.wake()
    assert model.lit


def test_the_screen_draws_text_and_icons_through_the_glass_map():
    _, model, lcd = _rig()
    s = SegmentScreen(lcd, G.SEG)
    s.show(" -1234.56", G.VALVE | G.MONEY | G.PRESS)
    assert model.text() == " -1234.56" and model.icons() == ["valve", "money", "press"]
    assert model.shows(" -1234.56", ["valve", "money", "press"])
    assert not model.shows(" -1234.57")


def test_only_the_changed_addresses_are_sent():
    _, model, lcd = _rig()
    s = SegmentScreen(lcd, G.SEG)
    s.show("     1.00", 0)
    c0 = model.clocks
    s.show("     1.00", 0)
    assert model.clocks == c0, "nothing changed: nothing sent"
    s.show("     1.01", 0)
    # only the last cell changed: its two SEG lines, 3 + 6 + 2 * 4 clocks
    assert model.clocks - c0 == 17 and model.text() == "     1.01"


def test_a_driver_that_sends_nibbles_msb_first_is_caught():
    class MsbFirst(HT1621):
        def write(self, addr, nibbles, start, end):
            self._begin(0b101)
            self._send(addr, 6, True)
            for i in range(start, end):
                self._send(nibbles[i], 4, True)   # the bug: D3 first
            self._end()
    _, model, lcd = _rig(MsbFirst)
    SegmentScreen(lcd, G.SEG).show("12345678", G.CARD)
    assert not model.shows("12345678", ["card"]), model.decode()


def test_a_driver_that_clocks_faster_than_the_datasheet_allows_is_caught():
    _, model, lcd = _rig(half_us=2)     # 4 us a bit: WR phases of 2 us < 3.34 us
    lcd.init()
    assert model.timing_errors > 0
    _, model, lcd = _rig()
    lcd.init()
    assert model.timing_errors == 0
