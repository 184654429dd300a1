"""Bad command lines of the host tools get a clear one-line error and a
non-zero exit, never a traceback."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(tool, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


@pytest.mark.parametrize("uid, why", [("zz", "'zz' is not hex"),
                                      ("a1b2c3", "'a1b2c3' is 3 bytes: a UID has 4 or 7")])
def test_cardtool_new_refuses_a_bad_uid(tmp_path, uid, why):
    p = run("cardtool.py", "--test-keys", "new", tmp_path / "c.json", "--uid", uid)
    assert p.returncode == 2 and why in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "c.json").exists()
    assert run("cardtool.py", "--test-keys", "new", tmp_path / "c.json",
               "--uid", "a1b2c3d4e5f607").returncode == 0     # a 7-byte UID


def test_broker_names_a_missing_password_file(tmp_path):
    p = run("broker.py", "--dir", tmp_path / "b", "--passwd", "nope", "--acl", "nope.acl")
    assert p.returncode == 2 and "--passwd nope: no such file" in p.stderr
    assert "Traceback" not in p.stderr


def test_broker_on_a_busy_port_says_which_and_why(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run("broker.py", "--dir", tmp_path / "b", "--anonymous", "--port", port)
    assert p.returncode == 1
    assert f"127.0.0.1:{port} is already in use (Address already in use)" in p.stderr


def test_headend_names_a_missing_ca_file(tmp_path):
    db = tmp_path / "he.sqlite"
    assert run("headend.py", "--db", db, "init").returncode == 0
    p = run("headend.py", "--db", db, "--broker", "127.0.0.1:9", "--ca", tmp_path / "nope.pem",
            "topup", "SIM0001", "5000000")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"--ca {tmp_path / 'nope.pem'}: cannot load the CA" in p.stderr


def test_rollout_start_checks_the_image_before_the_broker(tmp_path):
    # no broker on port 9: a missing image must be named, not "cannot reach broker"
    db = tmp_path / "he.sqlite"
    assert run("headend.py", "--db", db, "init").returncode == 0
    p = run("headend.py", "--db", db, "--broker", "127.0.0.1:9", "rollout", "start",
            tmp_path / "nope.bin", "--version", "7", "--board", "esp32_devkitc", "--region", "3")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "cannot read the image" in p.stderr and "broker" not in p.stderr
