"""Attacks on the ingestion workers' broker credentials (docs/SECURITY.md
"Ingestion workers"): the user `ingest` lives on every worker host; with
its password one reads the meters' uplink, and nothing more. Real
Mosquitto, TLS, the ACL of tools/broker.py."""

import time

import paho.mqtt.client as mqtt
import pytest
from comms import codec, sign
from headend import HeadEnd
from mqttkit import connected
from sqlalchemy import text
from test_ingest import IngestWorld
from uplinksim import MeterClient, outbox_messages


@pytest.fixture()
def world(tmp_path):
    w = IngestWorld(tmp_path, f"sqlite:///{tmp_path / 'he.sqlite'}")
    yield w
    w.close()


def _client(w, user, pw, cid, got=None):
    keep = None if got is None else (lambda cl, u, m: got.append((m.topic, bytes(m.payload))))
    return connected(w, user, pw, cid, admin=True, on_message=keep, protocol=mqtt.MQTTv5)


def test_attack_the_ingest_user_reads_the_uplink_and_can_publish_nothing(world):
    w = world
    seen = []      # what the head-end's own user sees of everything
    watch = _client(w, "headend", w.he_pw, "watch", seen)
    watch.subscribe([("m/#", 1), ("r/#", 1)])
    ing_got = []
    ing = _client(w, "ingest", w.ingest_pw, "ingest-x-1", ing_got)
    ing.subscribe([("$share/x/m/+/t", 1), ("m/+/c", 1), ("r/#", 1)])
    time.sleep(0.5)
    # a command, a tariff, a forged telemetry record and a status, as `ingest`
    rcs = [ing.publish(t, b"x", qos=1) for t in ("m/S01/c", "r/1/tariff", "m/S01/t", "m/S01/s")]
    for i in rcs:
        i.wait_for_publish(10)
    # the head-end sends a command, the meter reports: only the report reaches `ingest`
    watch.publish("m/S01/c", b"cmd", qos=1).wait_for_publish(10)
    with MeterClient(w.master, "S01", w.broker.host, w.broker.port, w.broker.ca_file) as m:
        m.send(outbox_messages(w.master, "S01", 1))
    time.sleep(1.0)
    for c in (watch, ing):
        c.disconnect()
        c.loop_stop()
    assert (b"x" not in [p for _, p in seen]), f"a publish of user ingest got through: {seen}"
    assert [t for t, _ in ing_got] == ["m/S01/t"], f"ingest read more than the uplink: {ing_got}"


def test_attack_an_ack_moved_to_another_command_is_refused_by_a_worker(world):
    """The head-end that sent command n is not the process that stores its
    ack: the worker checks the ack's h against the hash the sender
    recorded (commands.hash), as the sender would (docs/SECURITY.md N3)."""
    w = world
    sent = w.he.topup("S01", 5000, timeout=None)          # recorded and published; no meter answers
    n = sent["n"]
    worker = HeadEnd(w.db, w.master)                       # a worker's sink: it sent nothing
    uk = sign.uplink_key(sign.meter_key(w.master, "S01"))
    other = codec.seal(worker.meter_key("S01"), "m/S01/c", codec.command(n, "get", w="state"))
    moved = codec.seal_up(uk, "m/S01/a", codec.ack(n, 0, 5000, None, other))
    assert worker.ingest("S01", "a", moved) == 0
    assert [a["kind"] for a in worker.alarms("S01")] == ["ack_mismatch"]
    assert w.he.topup_status("S01", 1, sent.get("seq", 1))["status"] == "pending"
    with worker.engine.connect() as c:
        [(payload_hash,)] = c.execute(text("SELECT hash FROM commands WHERE meter = 'S01' AND n = :n"),
                                      {"n": n}).all()
    # the genuine answer: its h is the hash of what was published
    genuine = codec.ack(n, 0, 5000, None, b"")
    genuine = genuine[:14] + bytes.fromhex(payload_hash) + genuine[22:]
    assert worker.ingest("S01", "a", codec.seal_up(uk, "m/S01/a", genuine)) == 1
    assert w.he.topup_status("S01", 1, sent.get("seq", 1))["status"] == "applied"
