"""A paho client of a test world's broker (conftest's mqtt worlds,
test_ingest.IngestWorld): real Mosquitto, TLS against the world's CA."""

import threading

import paho.mqtt.client as mqtt


def connected(w, user, pw, client_id, admin=False, on_message=None, **client_kw):
    """user's client with password pw, connected (on the admin listener
    with admin) and its network loop running; on_message is set before the
    connect. client_kw goes to mqtt.Client (protocol=...)."""
    up = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **client_kw)
    c.username_pw_set(user, pw)
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda *a: up.set()
    if on_message is not None:
        c.on_message = on_message
    c.connect(w.broker.host, w.broker.admin_port if admin else w.broker.port)
    c.loop_start()
    assert up.wait(10)
    return c
