# A development boot that starts no meter keeps its reason for the prompt:
# a console that attached after the boot's message (mpremote over a pty)
# gets it from the first service command instead of a bare "no meter".
import main
import service
from simkit import fresh_dir


def _status_error():
    try:
        service.status()
    except RuntimeError as e:
        return str(e)
    raise AssertionError("status() ran without a meter")


def test_a_board_the_port_cannot_build_is_named_by_status():
    # no board.txt means esp32_devkitc; the unix port has no machine.Pin
    assert main.boot("esp32_devkitc", state_dir=fresh_dir("nopin")) is None
    msg = _status_error()
    assert msg.startswith("no meter attached: boot failed: ImportError"), msg
    assert "Pin" in msg and "board esp32_devkitc" in msg, msg


def test_a_board_config_error_is_named_by_status():
    assert main.boot("unix", state_dir=fresh_dir("badpins"), pins={"valve_open": 99}) is None
    msg = _status_error()
    assert "board config (unix)" in msg, msg
