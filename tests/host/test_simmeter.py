"""The integrator's commands of docs/INTEGRATION.md, run as documented: a
broker from tools/broker.py's command line (TLS, passwords, ACL, separate
head-end listener) and a fleet from tools/simmeter.py, driven by the
reference head-end; a restart keeps each meter's config and its clock."""

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from broker import free_port
from conftest import wait_for
from headend import HeadEnd
from office import OfficeKey, office_secrets

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _stop(p, timeout=20):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_fleet_on_a_broker_from_the_command_line(tmp_path):
    bdir, mdir = tmp_path / "broker", tmp_path / "meters"
    master = tmp_path / "master.key"
    master.write_text(secrets.token_hex(32) + "\n")
    office = OfficeKey.generate(rev=1)
    (tmp_path / "office.json").write_text(json.dumps(office_secrets([office])))
    port = free_port()
    admin = free_port()
    subprocess.run([PY, "tools/broker.py", "--dir", str(bdir), "--pki-only"], cwd=ROOT, check=True)
    ca = bdir / "ca.pem"
    fleet = [PY, "tools/simmeter.py", "--state", str(mdir), "--master", str(master), "--fleet", "2",
             "--region", "4", "--broker", f"127.0.0.1:{port}", "--tls", "--ca", str(ca),
             "--office", str(tmp_path / "office.json"), "--keepalive", "15", "--speed", "60"]
    log = open(tmp_path / "out.log", "ab")  # noqa: SIM115 - closed at the end
    meters = subprocess.Popen(fleet + ["--broker-files", str(bdir), "--headend-password", "hp"],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: (bdir / "acl").exists(), timeout=60, what="broker files")
    broker = subprocess.Popen([PY, "tools/broker.py", "--dir", str(bdir), "--port", str(port),
                               "--admin-port", str(admin), "--tls", "--passwd", str(bdir / "passwd"),
                               "--acl", str(bdir / "acl")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    he = None
    try:
        he = HeadEnd(tmp_path / "he.db", bytes.fromhex(master.read_text().strip()), "127.0.0.1", admin,
                     "headend", "hp", str(ca), "headend", persistent=True, office=office)
        wait_for(lambda: socket.create_connection(("127.0.0.1", admin), 1).close() or True,
                 timeout=60, what="the broker's head-end listener")
        for mid in ("SIM0001", "SIM0002"):
            he.provision(mid, 4)
        he.connect()
        # a command is queued for a meter only once it has subscribed: wait for it online
        wait_for(lambda: all(m["online"] for m in he.meters()), timeout=90, what="the fleet online")
        for mid in ("SIM0001", "SIM0002"):
            a = he.topup(mid, 1_000_000, timeout=90)
            assert a["result"] == "accepted" and a["val"] == 1_000_000, a
        # the office's public key came with --office: an office-signed region tariff applies
        he.publish_tariff({"v": 2, "at": 0, "b": [[0, 500_000]], "sc": 0}, region=4)
        wait_for(lambda: he.get("SIM0002", timeout=60)["detail"]["tv"] == 2, timeout=90,
                 what="region tariff")
        assert he.configure("SIM0001", "report_s", 120, timeout=60)["result"] == "accepted"
        t1 = he.get("SIM0001", timeout=60)["detail"]["t"]
        _stop(meters)
        cfg = json.loads((mdir / "SIM0001" / "config.json").read_text())
        assert cfg["report_s"] == 120 and cfg["mqtt"]["keepalive"] == 15
        # the same command again, without --keepalive: what the head-end set stays
        meters = subprocess.Popen(fleet[:-4] + ["--speed", "60"], cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
        time.sleep(1)
        a = he.get("SIM0001", "cfg", timeout=90)
        assert a["detail"]["report_s"] == 120
        s = he.get("SIM0001", timeout=60)["detail"]
        assert s["t"] > t1 and s["bal"] <= 1_000_000 and s["n"] >= 3
        assert json.loads((mdir / "SIM0001" / "config.json").read_text())["mqtt"]["keepalive"] == 15
    finally:
        if he is not None:
            he.close()
        _stop(meters)
        _stop(broker)
        log.close()


def test_tls_without_a_ca_is_refused(tmp_path):
    sec = tmp_path / "s.json"
    sec.write_text(json.dumps({"id": "X1", "mk": "00" * 32, "rk": "00" * 32, "user": "X1", "pw": "p"}))
    p = subprocess.run([PY, "tools/simmeter.py", "--state", str(tmp_path / "m"), "--secrets", str(sec),
                        "--region", "1", "--broker", "127.0.0.1:1", "--tls"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert p.returncode != 0 and "--tls needs --ca" in p.stderr
