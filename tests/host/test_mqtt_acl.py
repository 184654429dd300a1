"""The broker's side of the trust model: TLS with server validation,
per-meter passwords, and ACLs that keep a meter to its own topics and its
region's tariff. A meter's stolen credentials cannot command another meter,
publish a tariff, or read another meter's data."""

import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from broker import make_test_pki
from comms import sign
from conftest import wait_for


def client(w, user, password, ca=None, connect=True, port=None):
    got = []
    ev = threading.Event()
    rc = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-rogue-{time.monotonic_ns()}")
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=ca or w.broker.ca_file)

    def on_connect(cl, ud, flags, reason, props=None):
        rc["rc"] = reason
        ev.set()

    c.on_connect = on_connect
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload))
    c.connect(w.broker.host, port or w.broker.port)
    c.loop_start()
    assert ev.wait(10)
    return c, rc["rc"], got


@pytest.fixture(scope="module")
def m2(mqtt_world):
    m = mqtt_world.start_meter("M2", report_s=30)
    m.wait(lambda s: s["connected"])
    yield m
    m.stop()


def test_a_meter_cannot_command_another_meter(mqtt_world, m2):
    w = mqtt_world
    he = w.he
    c, rc, _ = client(w, "M1", sign.mqtt_password(w.master, "M1"))
    assert rc == 0
    # even a correctly signed command (say, replayed from elsewhere) is dropped
    # by the broker, because M1 may not publish under m/M2/
    n, topic, payload = he.sealed_command("M2", "topup", a=8, s=1, v=1_000_000)
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    # ... and may not forge M2's acks or telemetry either
    c.publish("m/M2/a", b"\x01\x00\x00\x00\x63\x00" + bytes(8), qos=1).wait_for_publish(5)
    time.sleep(1.0)
    assert ("M2", n) not in he._acks and ("M2", 0x63) not in he._acks
    # the genuine head-end's next command shows M2 never saw the rogue one
    st = he.get("M2", "state")["detail"]
    assert st["bal"] == 0   # a delivered top-up would have credited 1 000 000
    c.loop_stop()
    c.disconnect()


def test_a_meter_cannot_publish_a_tariff(mqtt_world, m2):
    w = mqtt_world
    c, _rc, _ = client(w, "M1", sign.mqtt_password(w.master, "M1"))
    # a genuine office-signed tariff (as a meter could relay one): only the ACL stops it
    doc = w.he.sign_doc(b"tariff", {"k": "tariff", "r": 1, "v": 77, "at": 0, "b": [[0, 1]], "sc": 0})
    c.publish("r/1/tariff", doc, qos=1, retain=True).wait_for_publish(5)
    time.sleep(1.0)
    assert m2.status()["tv"] != 77
    # nothing retained either: a head-end subscriber sees no v77
    h, _, got = client(w, "headend", w.he_password)
    h.subscribe("r/1/tariff", 1)
    time.sleep(0.5)
    assert not any(b'"v":77' in p for _, p in got)
    for x in (c, h):
        x.loop_stop()
        x.disconnect()


def test_a_meter_cannot_read_another_meters_data(mqtt_world, m2):
    w = mqtt_world
    c, _rc, got = client(w, "M1", sign.mqtt_password(w.master, "M1"))
    c.subscribe([("m/M2/#", 1), ("m/+/t", 1), ("r/2/tariff", 1)])
    w.he.get("M2", "state")                       # makes M2 publish an ack
    wait_for(lambda: len(w.he.telemetry("M2")) >= 2, what="M2 telemetry flowing")
    time.sleep(1.0)
    assert got == [], got
    c.loop_stop()
    c.disconnect()


def test_a_meter_reads_its_regions_board_manifests_and_cannot_publish_one(mqtt_world, m2):
    # r/<r>/ota/<board> (docs/OTA.md §4): a meter's credentials publish no
    # manifest, retained or not, on a board topic or the region-wide one of
    # older images; it reads its own region's, not another region's
    w = mqtt_world
    board = "r/1/ota/esp32_devkitc"
    # the head-end's user on its own listener (on the meters' one its
    # client id would be its user name, and take over the head-end's session)
    h, _, seen = client(w, "headend", w.he_password, port=w.broker.admin_port)
    h.subscribe([("r/1/ota/#", 1), ("r/2/ota/#", 1)])
    # M3's credentials: no meter process of that id runs to take the
    # connection over (the broker's client id is the user name)
    c, _rc, got = client(w, "M3", sign.mqtt_password(w.master, "M3"))
    try:
        for t in (board, "r/1/ota/esp32_battery", "r/1/ota"):
            c.publish(t, b"rogue", qos=1, retain=True).wait_for_publish(5)
        h.publish(board, b"genuine", qos=1, retain=True).wait_for_publish(5)
        h.publish("r/2/ota/esp32_devkitc", b"region 2", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: (board, b"genuine") in seen and ("r/2/ota/esp32_devkitc", b"region 2") in seen,
                 what="the head-end's own manifests")
        c.subscribe([(board, 1), ("r/1/ota", 1), ("r/2/ota/esp32_devkitc", 1)])
        wait_for(lambda: (board, b"genuine") in got, what="M3 reading its region's board manifest")
        time.sleep(1.0)
        assert not any(p == b"rogue" for _, p in seen + got), (seen, got)
        assert not any(t.startswith("r/2/") for t, _ in got), got
    finally:
        for t in (board, "r/2/ota/esp32_devkitc"):
            h.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
        for x in (c, h):
            x.loop_stop()
            x.disconnect()


def test_wrong_password_and_unknown_user_are_refused(mqtt_world):
    w = mqtt_world
    for user, pw in (("M1", "0" * 32), ("intruder", "x"), ("M1", sign.mqtt_password(b"other master", "M1"))):
        c, rc, _ = client(w, user, pw)
        assert rc != 0, (user, rc)
        c.loop_stop()


def test_server_certificate_is_validated(mqtt_world, tmp_path):
    w = mqtt_world
    # a client that trusts another CA does not talk to this broker
    ca, _, _ = make_test_pki(tmp_path)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wrong-ca")
    c.tls_set(ca_certs=str(ca))
    with pytest.raises(ssl.SSLError):
        c.connect(w.broker.host, w.broker.port)
    # ... nor does the meter firmware provisioned with the wrong CA
    m = w.start_meter("M3", state_dir=tmp_path / "M3", ca_pem=ca.read_text())
    m.wait(lambda s: s["failures"] >= 2, what="TLS failures")
    st = m.status()
    assert st["connected"] == 0 and st["connects"] == 0 and st["outbox"] > 0
    m.stop()
