# The ESP32 mains boards' power-fail input (docs/BOARDS.md "Power-fail
# input", SECURITY W1): the board files build it from their pin map, pulled
# up, and the meter they assemble closes an open valve when it falls. The
# board files run as they are; machine and network are the stand-ins of
# tests/mp/esp32kit.py (the hardware boundary).
import esp32kit  # noqa: F401 - machine and network first
from esp32kit import Pin
import boards
import codes
import main
from boards import validate
from mptest import fresh_dir
from simkit import make_cfg

VALVE_CLOSE = 26               # esp32_devkitc's H-bridge IN2


def _build(name, pins=None):
    Pin.made.clear()
    return boards.load(name).build(state_dir=fresh_dir(name), pins=pins)


def test_the_mains_boards_build_a_pulled_up_power_fail_input():
    for name, gpio in (("esp32_devkitc", 16), ("esp32s3_devkitc", 2)):
        hw = _build(name)
        p = hw.power_fail_pin
        assert p is Pin.made[gpio], name
        assert p.mode == Pin.IN and p.pull == Pin.PULL_UP and p.value() == 1, name
    assert _build("esp32c3_devkitm").power_fail_pin is None     # no GPIO left on the C3
    # board.txt moves it, or takes it off (a WROVER's GPIO 16 is its PSRAM's)
    assert _build("esp32_devkitc", {"power_fail": 17}).power_fail_pin is Pin.made[17]
    hw = _build("esp32_devkitc", {"power_fail": None})
    assert hw.power_fail_pin is None and 16 not in Pin.made


def test_a_fall_on_the_devkitc_input_closes_the_open_valve_for_power():
    # no limit switches: the valve is taken to be where it was driven
    hw = _build("esp32_devkitc", {"fb_open": None, "fb_closed": None})
    m = main.assemble(hw, make_cfg(reopen="auto"))
    pf = hw.power_fail_pin
    assert pf.handler is not None and pf.trigger == Pin.IRQ_FALLING
    assert m.apply_credit("card", 1, 1, 10_000) == codes.ACCEPTED
    m.poll()
    assert m.want_open
    coil = Pin.made[VALVE_CLOSE]
    before = len(coil.writes)
    pf.drive(1)                                   # a rise is not a cut
    assert m.want_open and len(coil.writes) == before
    pf.drive(0)                                   # the comparator: the supply is going
    assert not m.want_open and m.why_closed == codes.WHY_POWER
    assert 1 in coil.writes[before:] and coil.value() == 0    # the close coil pulsed, then released


def test_board_txt_none_trades_the_c3_sensor_loop_for_the_input():
    d = fresh_dir("c3pf")
    with open(d + "/board.txt", "w") as f:
        f.write("esp32c3_devkitm\npin.sensor=none\npin.power_fail=10\n")
    name, opts = main.read_board_txt(d + "/board.txt")
    assert opts["pins"] == {"sensor": None, "power_fail": 10}
    mod = boards.load(name)
    assert validate.check_module(mod, opts["pins"]) == []
    assert validate.check_module(mod, {"power_fail": 10}) == ["power_fail and sensor: both on GPIO 10"]
    hw = _build(name, opts["pins"])
    assert hw.power_fail_pin is Pin.made[10] and hw.sensor_pin is None
