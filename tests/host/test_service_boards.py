"""Board definitions and their validation (boards/validate.py runs the same
under CPython). The ESP32 board modules import machine, so their pin maps
are read from the source."""

import ast
import importlib.util
import subprocess
import sys

import pytest
from ptymeter import ROOT, PtyMeter, mp_env, write_device

BOARDS = ["esp32_devkitc", "esp32s3_devkitc", "esp32c3_devkitm"]


def _validate():
    spec = importlib.util.spec_from_file_location("bvalidate", ROOT / "boards" / "validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


V = _validate()


def _consts(name):
    tree = ast.parse((ROOT / "boards" / (name + ".py")).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and hasattr(node.targets[0], "id"):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


@pytest.mark.parametrize("name", BOARDS)
def test_shipped_boards_are_valid(name):
    c = _consts(name)
    assert c["CHIP"] in V.CHIPS
    for role in ("pulse", "valve_open", "valve_close", "spi_sck", "spi_mosi", "spi_miso",
                 "card_cs", "card_rst", "led", "buzzer", "button", "tamper", "battery", "power_fail"):
        assert role in c["PINS"], role
    assert V.check(c["CHIP"], c["PINS"], None, c["COUNTER_UNIT"]) == []


def test_c3_counts_with_irqs():
    c = _consts("esp32c3_devkitm")
    assert c["COUNTER_UNIT"] is None
    src = (ROOT / "boards" / "esp32c3_devkitm.py").read_text()
    assert "Counter(" not in src       # no PCNT: build_hardware() counts by IRQ
    errs = V.check("esp32c3", c["PINS"], None, 0)
    assert any("no PCNT" in e for e in errs), errs


@pytest.mark.parametrize("over, words", [
    ({"led": 25}, "both on GPIO 25"),                 # conflict with the valve
    ({"valve_open": None}, "valve_open: missing"),
    ({"valve_close": 34}, "input-only"),
    ({"valve_open": 12}, "strapping pin"),
    ({"card_cs": 7}, "reserved"),                     # SPI flash
    ({"battery": 4}, "not on ADC1"),
    ({"pulse": 40}, "does not exist"),
    ({"spi_miso": None}, "card reader: needs all"),
    ({"valev_open": 3}, "no such role"),
    ({"led": "2"}, "not a GPIO number"),
    ({"power_fail": 25}, "both on GPIO 25"),
    ({"power_fail": 6}, "reserved"),
    ({"power_fail": 0}, "power_fail: GPIO 0 is a strapping pin"),     # and the button's
])
def test_bad_pin_maps_are_named(over, words):
    c = _consts("esp32_devkitc")
    errs = V.check("esp32", c["PINS"], over, 0)
    assert any(words in e for e in errs), errs


@pytest.mark.parametrize("name", BOARDS)
def test_the_power_fail_input_is_optional_and_kept_off_strapping_pins(name):
    # an open-drain comparator output, active low: low while the supply is
    # under its threshold, which can be when the chip leaves reset
    c = _consts(name)
    chip, pins = c["CHIP"], c["PINS"]
    gpio = pins["power_fail"]
    assert gpio is None or gpio not in V.CHIPS[chip]["strap"]
    assert V.check(chip, pins, {"power_fail": None}, c["COUNTER_UNIT"]) == []
    for strap in V.CHIPS[chip]["strap"]:
        # the strap's own role taken off, so only the strap is wrong
        free = {r: None for r, g in pins.items() if g == strap}
        errs = V.check(chip, pins, dict(free, power_fail=strap), c["COUNTER_UNIT"])
        assert f"power_fail: GPIO {strap} is a strapping pin; the comparator may hold it low at " \
            "reset" in errs, errs


def test_s3_octal_psram_and_usb_pins_are_refused():
    c = _consts("esp32s3_devkitc")
    errs = V.check("esp32s3", c["PINS"], {"led": 35, "buzzer": 20})
    assert any("GPIO 35 is reserved" in e for e in errs) and any("GPIO 20" in e for e in errs)


def test_bad_board_txt_gives_a_clear_error_and_a_live_repl(tmp_path):
    # a real boot through main.py on the pty: a pin conflict on a board with a
    # pin map -> message, nothing driven, the REPL answers (no crash loop)
    write_device(tmp_path, board="unix", speed=20, opts={"pin.led": 5})
    with PtyMeter(tmp_path) as pm:
        pm.wait_ready()
        out = pm.exec("print(_session)")
        assert "None" in out
        out = pm.mpremote("exec", "status()", check=False)
        assert "no meter attached" in out, out
    # what the meter printed on its port before the first mpremote command
    boot = (tmp_path / "pty.log").read_bytes().split(b"raw REPL")[0]
    assert b"pin.led" in boot and b"Traceback" not in boot, boot


def test_unknown_board_name_is_a_clear_error(tmp_path):
    write_device(tmp_path, board="esp32_nosuch", speed=20)
    env = mp_env()
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "micropython"), str(ROOT / "firmware" / "main.py")],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=20,
                       check=False)
    assert p.returncode == 0, p.stdout + p.stderr       # returns to the REPL, no reset
    assert "FAILED TO START" in p.stdout and "esp32_nosuch" in p.stdout, p.stdout


def test_docs_boards_has_a_wiring_diagram_per_board():
    text = (ROOT / "docs" / "BOARDS.md").read_text()
    for name in BOARDS + ["unix"]:
        assert "## " in text and name in text, name
    assert text.count("```") >= 8


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
