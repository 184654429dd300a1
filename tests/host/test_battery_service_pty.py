"""A battery meter's service mode over its serial line, end to end: main.py
on the unix battery board at a power-on, its clock at the host's pace
(speed=1), the console the UART-model pty (tools/uartpty.py). The
technician types svc within the 2 s, the office signs the challenge
(tools/flash.py svc-token), the REPL opens, status() runs, done() ends the
mode (docs/BATTERY.md §12, docs/SERVICE.md §7)."""

import json
import sys

import pytest
from ptymeter import ROOT
from storage.state import mark_provisioned
from test_attack_serial_access import challenge_of, office, token  # noqa: F401 - office: a fixture

sys.path.insert(0, str(ROOT / "tools"))
from office import office_secrets
from uartpty import UartMeter

pytestmark = pytest.mark.timeout(120)


def battery_device(root, key):
    # the ULP program as tools/ulp_build.py assembles it (make setup fetched
    # the assembler); never a skip: a fresh clone has no build/ulp yet
    import ulp_build
    (root / "build" / "ulp").mkdir(parents=True)
    ulp_build.build(root / "build" / "ulp" / "counter.ulp")   # the board reads it from its cwd
    data = root / "data"
    data.mkdir()
    (root / "board.txt").write_text(f"unix_battery\nstate_dir={data}\nspeed=1\n")
    (data / "config.json").write_text(json.dumps({"production": True}))
    (data / "secrets.json").write_text(json.dumps(office_secrets([key])))
    mark_provisioned(str(data))
    return data


def test_a_technician_opens_a_battery_meter_at_power_on_and_done_ends_it(tmp_path, office):  # noqa: F811
    key, path = office
    battery_device(tmp_path, key)
    with UartMeter(tmp_path) as m:
        assert m.wait_for("battery, asleep in 2 s. Technician: type svc"), m.output()
        m.send(b"svc\r\n")
        ch = challenge_of(m)
        assert ch.split()[1] == "M000001"
        assert "service mode 1 of 2 today" in m.output(), m.output()
        assert not m.repl_answers(1.0), "the REPL must stay closed before the office's answer"
        m.send(token(path, ch, 120).encode() + b"\r\n")
        assert m.wait_for("service open for 30 min"), m.output()    # 120 asked, 30 on a battery meter
        assert m.repl_answers(5), m.output()
        m.send(b"status()\r\n")
        assert m.wait_for("-- meter M000001"), m.output()
        m.send(b"done()\r\n")
        assert m.wait_for("service mode over: saved; back to deep sleep"), m.output()
    # the typed command before the answer was read by the gate, not run
    assert m.output().count("REPL-OPEN") == 1
