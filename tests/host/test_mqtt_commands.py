"""Signed commands end to end: the head-end, real Mosquitto (TLS, passwords,
ACL) and meter firmware on the unix port. Top-up exactly once, replayed and
forged commands, configuration, time sync, state requests, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sql, wait_for

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED, USED, FORMAT, RANGE, OLD, SIGNATURE = 0, 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def m1(mqtt_world):
    m = mqtt_world.start_meter("M1")
    m.wait(lambda s: s["connected"], what="M1 connected over TLS")
    yield m
    m.stop()


def test_telemetry_reaches_the_head_end(mqtt_world, m1):
    he = mqtt_world.he
    rows = wait_for(lambda: he.telemetry("M1"), what="telemetry in SQLite")
    assert rows[0]["kind"] == 1 and rows[0]["t"] > 1_700_000_000
    meters = {m["id"]: m for m in he.meters()}
    assert meters["M1"]["online"] == 1 and meters["M1"]["last_seen"]


def test_topup_is_applied_exactly_once(mqtt_world, m1):
    he = mqtt_world.he
    before = he.get("M1", "state")["detail"]["bal"]
    a = he.topup("M1", 2_000_000, account=3)
    assert a["result"] == "accepted" and a["val"] == before + 2_000_000
    # the head-end did not see the ack and sends the same top-up again
    again = he.topup("M1", 2_000_000, account=3, seq=a["seq"])
    assert again["code"] == USED and again["n"] > a["n"]
    assert he.get("M1", "state")["detail"]["bal"] == before + 2_000_000
    m1.wait(lambda s: s["bal"] == before + 2_000_000)


def test_replayed_command_is_refused(mqtt_world, m1):
    he = mqtt_world.he
    n, topic, payload = he.sealed_command("M1", "topup", a=4, s=1, v=1_000)
    he.client.publish(topic, payload, qos=1)
    first = he.wait_ack("M1", n)
    assert first["code"] == ACCEPTED
    bal = first["val"]
    he._acks.pop(("M1", n))
    he.client.publish(topic, payload, qos=1)      # an eavesdropper's replay
    a = he.wait_ack("M1", n)
    assert a["code"] == OLD and a["val"] == n
    m1.wait(lambda s: s["rejected"] >= 1)
    assert he.get("M1", "state")["detail"]["bal"] == bal


def test_forged_command_is_refused(mqtt_world, m1):
    he = mqtt_world.he
    from comms import codec
    n = he.next_counter("M1")
    body = codec.command(n, "topup", a=5, s=1, v=90_000_000)
    forged = codec.seal(b"guessed key".ljust(32, b"\0"), "m/M1/c", body)
    bal = he.get("M1", "state")["detail"]["bal"]
    he._acks.pop(("M1", 0), None)
    he.client.publish("m/M1/c", forged, qos=1)
    # the ack of a forgery echoes nothing of it: counter 0 (docs/PROTOCOL.md §4.4)
    assert he.wait_ack("M1", 0)["code"] == SIGNATURE
    he._acks.pop(("M1", 0), None)
    he.client.publish("m/M1/c", b"not even json" * 3, qos=1)
    assert he.wait_ack("M1", 0)["code"] == FORMAT
    # the meter is still fine, takes the next genuine command, credited nothing
    a = he.get("M1", "state")
    assert a["result"] == "accepted" and a["detail"]["bal"] == bal


def test_config_time_and_log(mqtt_world, m1):
    he = mqtt_world.he
    assert he.configure("M1", "low1", 2_000_000)["code"] == ACCEPTED
    assert he.configure("M1", "low1", -5)["code"] == RANGE
    assert he.configure("M1", "mqtt", {})["result"] == "unknown"
    assert he.get("M1", "cfg")["detail"]["low1"] == 2_000_000
    cfg = json.loads((m1.dir / "config.json").read_text())
    assert cfg["low1"] == 2_000_000
    t = m1.status()["t"] + 86_400
    assert he.timesync("M1", t)["code"] == ACCEPTED
    m1.wait(lambda s: s["t"] >= t, what="clock set")
    log = he.get("M1", "log")
    assert log["code"] == ACCEPTED and any(e[2] == 28 for e in log["detail"])   # time-set


def test_remote_valve_close_and_open(mqtt_world, m1):
    he = mqtt_world.he
    assert he.topup("M1", 1_000_000, account=7)["code"] == ACCEPTED
    a = he.valve("M1", False)
    assert a["result"] == "accepted" and a["val"] == 0
    m1.wait(lambda s: s["valve"] == 0, what="valve closed")
    a = he.valve("M1", True)
    assert a["result"] == "accepted" and a["val"] == 1
    m1.wait(lambda s: s["valve"] == 1, what="valve open")


def test_events_are_ingested(mqtt_world, m1):
    he = mqtt_world.he
    assert he.topup("M1", 1_000, account=6)["code"] == ACCEPTED
    wait_for(lambda: any(e["code"] == 2 for e in he.events("M1")), what="credit event")
    evs = he.events("M1")
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs)


def test_cli(mqtt_world, m1, tmp_path):
    w = mqtt_world
    master = tmp_path / "hd.master"
    master.write_text(w.master.hex())
    w.office.save(str(w.tmp / "he.sqlite") + ".office.pem")   # where the CLI looks for it
    base = [sys.executable, str(ROOT / "tools" / "headend.py"), "--db", str(w.tmp / "he.sqlite"),
            "--master", str(master), "--broker", f"{w.broker.host}:{w.broker.admin_port}",
            "--ca", w.broker.ca_file, "--user", "headend", "--password", w.he_password]

    def cli(*args):
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=60, check=False)

    p = cli("get", "M1", "state")
    assert p.returncode == 0, p.stderr
    assert "accepted" in p.stdout and '"id": "M1"' in p.stdout
    p = cli("topup", "M1", "1000", "--account", "9")
    assert p.returncode == 0 and "accepted" in p.stdout, p.stdout + p.stderr
    p = cli("topup", "M1", "1000", "--account", "9", "--seq", "1")
    assert p.returncode == 0 and "used" in p.stdout
    p = cli("config", "M1", "report_s", "5")
    assert p.returncode == 1 and "range" in p.stdout
    p = cli("topup", "NOPE", "1000")
    assert p.returncode == 2 and "unknown meter 'NOPE'" in p.stderr
    p = cli("provision", "M6", "--region", "1", "--state", str(tmp_path / "M6"), "--tls")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "M6" / "secrets.json").read_text())["ca"].startswith("-----BEGIN")
    p = cli("tariff", "--region", "1", "--version", "3", "--block", "1000:350000", "--block", "0:700000")
    assert p.returncode == 0 and "published tariff v3" in p.stdout, p.stderr
    p = cli("tariff", "--region", "1", "--version", "4", "--block", "lots")
    assert p.returncode == 2 and "bad block" in p.stderr
    # a social tariff: the meter checks every field (an hour of 24 is out of range)
    social = ["tariff", "--meter", "M1", "--version", "7", "--block", "0:500000", "--free-litres",
              "6000", "--min-charge", "300000", "--debt-recovery", "25:70000"]
    p = cli(*social, "--daily-free", "50:24")
    assert p.returncode == 1 and "range" in p.stdout, p.stdout + p.stderr
    p = cli(*social, "--daily-free", "50:6")
    assert p.returncode == 0 and "accepted" in p.stdout, p.stdout + p.stderr
    p = cli(*social, "--daily-free", "fifty")
    assert p.returncode == 2 and "bad litres:hour" in p.stderr
    p = cli("meters")
    assert p.returncode == 0 and "M1" in p.stdout
    p = cli("listen", "--seconds", "0.3")      # says what it listens to, then listens
    assert p.returncode == 0 and "listening on" in p.stdout and "m/+/t" in p.stdout, p.stderr
    p = subprocess.run(base[:-4] + ["get", "M1", "state"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 2 and "did not accept" in p.stderr   # no credentials


def test_head_end_catches_up_with_the_meters_counter(mqtt_world, m1):
    # the head-end's database was restored from an old backup: its counter for
    # M1 is far behind; the `old` ack's value (the meter's counter) resyncs it
    # and the command goes once more (docs/PROTOCOL.md §4.4)
    he = mqtt_world.he
    state = he.get("M1", "state")
    ctr, bal = state["n"], state["detail"]["bal"]
    assert state["detail"]["n"] == ctr

    def lose_count():
        sql(he, "UPDATE meters SET ctr = 1 WHERE id = 'M1'")

    lose_count()
    a = he.get("M1", "state")
    assert a["result"] == "accepted" and a["n"] == ctr + 1
    lose_count()
    # a top-up can answer `old` of its own: a `get` probe tells which it was
    t = he.topup("M1", 1_000, account=6)
    assert t["result"] == "accepted" and t["val"] == bal + 1_000 and t["n"] == ctr + 2
    assert he.topup_status("M1", 6, t["seq"])["status"] == "applied"
    # a genuine `old` of the op itself (an arrears sequence below the last,
    # its value the debt register) is not taken for a lost counter
    d = he.add_arrears("M1", 5_000, seq=50)
    assert d["result"] == "accepted"
    o = he.add_arrears("M1", 5_000, seq=49)
    assert o["code"] == OLD and o["val"] == d["val"] > d["n"]
    ctr_now = sql(he, "SELECT ctr FROM meters WHERE id = 'M1'")[0][0]
    assert ctr_now == o["n"] + 1     # the debt, then the `get` probe
