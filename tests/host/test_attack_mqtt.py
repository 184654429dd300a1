"""Attacks on the MQTT channel, run against the real broker (Mosquitto with
TLS, passwords and the project's ACL) and meter processes on the unix port.
Each test fails if the attack works (docs/SECURITY.md, section MQTT)."""

import threading
import time

import paho.mqtt.client as mqtt
from comms import sign
from conftest import sql


def _rogue(w, user, client_id, port=None):
    """A client with `user`'s genuine credentials, asking for `client_id`."""
    up = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, sign.mqtt_password(w.master, user))
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda cl, ud, flags, reason, props=None: up.set() if reason == 0 else None
    c.connect(w.broker.host, port or w.broker.port)
    c.loop_start()
    return c, up


def test_attack_client_id_takeover_cannot_push_another_meter_off(mqtt_world):
    w = mqtt_world
    m3 = w.start_meter("M3", keepalive=10)
    m3.wait(lambda s: s["connected"])
    before = m3.status()["connects"]
    # meter M4's owner, with M4's own credentials, claims M3's client id,
    # again and again (each connect would take the id over once)
    for i in range(3):
        c, up = _rogue(w, "M4", "M3")
        assert up.wait(10), "the rogue's own credentials are valid: it gets a connection"
        time.sleep(0.7)
        c.disconnect()
        c.loop_stop()
    time.sleep(1.0)
    s = m3.status()
    assert s["connected"] and s["connects"] == before, (
        f"M3 was pushed off the broker by a client using M4's credentials: {s!r}")
    m3.stop()


def test_attack_meter_credentials_are_refused_on_the_head_end_listener(mqtt_world):
    # the head-end's listener keeps client ids as given: a meter there could
    # take over any id, so it knows the admins only
    w = mqtt_world
    c, up = _rogue(w, "M4", "M3", port=w.broker.admin_port)
    assert not up.wait(3), "a meter's credentials opened a session on the head-end listener"
    c.loop_stop()


def test_headend_steps_into_the_next_epoch_at_the_end_of_range(tmp_path):
    import json as _json

    from comms import codec
    from headend import HeadEnd
    from office import OfficeKey
    he = HeadEnd(tmp_path / "he.sqlite", bytes(32), office=OfficeKey.generate())
    he.provision("M9", 1)
    sql(he, "UPDATE meters SET ctr = :c WHERE id = 'M9'", c=(1 << 32) - 2)
    bodies = []
    for _ in range(3):
        n, _topic, payload = he.sealed_command("M9", "get", w="state")
        bodies.append((n, _json.loads(payload[:payload.rindex(b"|")])))
    assert [(n, b.get("e", 0), b["n"]) for n, b in bodies] == [
        (0xFFFFFFFF, 0, 0xFFFFFFFF), (1, 1, 1), (2, 1, 2)]
    assert codec.MAX_DOWNLINK   # the bodies are ordinary commands
