"""Technician access to a production meter over its serial line, end to end:
the meter prints a challenge while its REPL is closed, the office signs it
with tools/flash.py svc-token, the technician types the answer, the REPL
opens. An answer for another meter, a replayed one, or a REPL command typed
at the closed meter open nothing (issue 10: "technician access per meter").
The console is the UART-model pty (tools/uartpty.py)."""

import json
import re
import subprocess
import sys

import pytest
from ptymeter import MICROPYTHON, ROOT, mp_env, write_device
from test_attack_serial_boot import meter_device

sys.path.insert(0, str(ROOT / "tools"))
from office import OfficeKey, office_secrets
from uartpty import UartMeter

pytestmark = pytest.mark.timeout(120)
FLASH = [sys.executable, str(ROOT / "tools" / "flash.py")]
CHALLENGE = re.compile(r"svc-challenge \S+ \d+ [0-9a-f]{32}")


@pytest.fixture
def office(tmp_path):
    key = OfficeKey.generate(rev=1)
    path = tmp_path / "office.pem"
    key.save(path)
    return key, path


def provisioned(root, key):
    data = meter_device(root)
    (data / "secrets.json").write_text(json.dumps(office_secrets([key])))
    return data


def token(path, challenge, minutes=30):
    p = subprocess.run(FLASH + ["svc-token", "--office-key", str(path), "--challenge", challenge,
                                "--minutes", str(minutes)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def challenge_of(m):
    assert m.wait_for("svc-challenge"), m.output()
    assert m.wait_for("\n", 2)
    found = CHALLENGE.findall(m.output())
    assert found, m.output()
    return found[-1]


def test_the_office_answer_opens_the_repl(tmp_path, office):
    key, path = office
    provisioned(tmp_path, key)
    with UartMeter(tmp_path) as m:
        assert m.wait_for("Technician: type svc"), m.output()
        m.send(b"print('RE' + 'PL-OPEN')\r\n\x03")            # typed at the closed meter
        assert not m.wait_for("REPL-OPEN", 1.0)
        m.send(b"svc\r\n")
        ch = challenge_of(m)
        assert ch.split()[1] == "M000001"
        m.send(token(path, ch, 15).encode() + b"\r\n")
        assert m.wait_for("service open for 15 min"), m.output()
        assert m.repl_answers(5), m.output()
    # the commands typed while it was closed were read by the gate, not run
    assert m.output().count("REPL-OPEN") == 1


def test_answers_for_another_meter_or_replayed_are_refused(tmp_path, office):
    key, path = office
    provisioned(tmp_path, key)
    with UartMeter(tmp_path) as m:
        assert m.wait_for("Technician: type svc"), m.output()
        m.send(b"svc\r\n")
        ch = challenge_of(m)
        other = ch.replace("M000001", "M000002")
        m.send(token(path, other).encode() + b"\r\n")       # signed for another meter
        assert m.wait_for("refused (signature)"), m.output()
        m.send(token(path, ch).encode() + b"\r\n")          # the challenge is spent
        assert m.wait_for("refused (no challenge"), m.output()
        assert not m.repl_answers(1.5), m.output()
        assert m.alive()


def test_svc_token_refuses_what_is_not_a_challenge(office):
    _key, path = office
    p = subprocess.run(FLASH + ["svc-token", "--office-key", str(path), "--challenge", "hello"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 2 and "not a challenge" in p.stderr


def test_a_production_meter_without_an_office_key_stays_closed(tmp_path):
    # the unix board has no case switch: the esp32c3_devkitm case
    meter_device(tmp_path)
    with UartMeter(tmp_path) as m:
        assert m.wait_for("PRODUCTION REFUSED"), m.output()
        m.send(b"svc\r\n")
        assert m.wait_for("no office key"), m.output()
        assert not m.repl_answers(1.5), m.output()
        assert m.alive()


def test_the_provisioned_pin_is_what_the_meter_checks(tmp_path):
    # flash.py's record (CPython hashlib) and the firmware's check agree
    sys.path.insert(0, str(ROOT / "tools"))
    import flash
    salt, rec = flash.pin_record("12345678", bytes(range(16)))
    data = write_device(tmp_path)
    code = (f"import pinkdf\nprint('OK', pinkdf.check({rec!r}, {salt!r}, '12345678'), "
            f"pinkdf.check({rec!r}, {salt!r}, '12345670'))")
    p = subprocess.run([MICROPYTHON, "-c", code], env=mp_env(), capture_output=True, text=True,
                       timeout=30, check=False, cwd=str(data))
    assert "OK True False" in p.stdout, p.stdout + p.stderr


def test_provision_production_writes_it_into_the_secrets(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(office_secrets([OfficeKey.generate()])))
    keys.chmod(0o600)
    p = subprocess.run(FLASH + ["provision", "--port", "x", "--meter-id", "M000009", "--region", "1",
                                "--secrets", str(keys), "--no-pin", "--production", "--dry-run"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert "production" in p.stdout.split("secrets [")[1], p.stdout


def test_the_service_window_ends_with_a_restart(tmp_path, office):
    # one minute of meter time (3 s at the simulator's 20x): then the meter
    # saves, logs the end, and resets (the simulator's process ends)
    key, path = office
    data = provisioned(tmp_path, key)
    with UartMeter(tmp_path) as m:
        assert m.wait_for("Technician: type svc"), m.output()
        m.send(b"svc\r\n")
        m.send(token(path, challenge_of(m), 1).encode() + b"\r\n")
        assert m.wait_for("service open for 1 min"), m.output()
        assert m.wait_for("service window over", 30), m.output()
        m.proc.wait(10)
    log = (data / "events.log").read_text().split("\n")
    opened = [ln.split()[3] for ln in log if len(ln.split()) == 4 and ln.split()[2] == "30"]
    assert opened[-2:] == ["1", "0"], log[-6:]
