"""Attacks on the ingestion workers' broker credentials (docs/SECURITY.md
"Ingestion workers"): the user `ingest` lives on every worker host; with
its password one reads the meters' uplink, and nothing more. Real
Mosquitto, TLS, the ACL of tools/broker.py."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from test_ingest import IngestWorld
from uplinksim import MeterClient, outbox_messages


@pytest.fixture()
def world(tmp_path):
    w = IngestWorld(tmp_path, f"sqlite:///{tmp_path / 'he.sqlite'}")
    yield w
    w.close()


def _client(w, user, pw, cid, got=None):
    up = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, pw)
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda *a: up.set()
    if got is not None:
        c.on_message = lambda cl, u, m: got.append((m.topic, bytes(m.payload)))
    c.connect(w.broker.host, w.broker.admin_port)
    c.loop_start()
    assert up.wait(10)
    return c


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
