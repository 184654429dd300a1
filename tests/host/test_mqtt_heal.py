"""The link heals itself (docs/LINK.md §4), against the real Mosquitto with
TLS and ACLs, a proxy that can freeze a connection half-open, and a minimal
broker that sends what Mosquitto would refuse to pass on. Broker restarts
with water flowing are tests/host/test_mqtt_outage.py."""

import socket
import threading
import time

import paho.mqtt.client as mqtt
from codes import EV_MESSAGE_TOO_LONG
from comms import codec
from conftest import wait_for
from headend import NoAck
from mqttwire import answer, publish_qos1, read_packet

TOPUP = 0


def _queue_topups(he, meter, count, account):
    """Publish signed top-ups without waiting for their acks."""
    ns = []
    for i in range(count):
        n, topic, payload = he.sealed_command(meter, "topup", a=account, s=i + 1, v=1000)
        he.client.publish(topic, payload, qos=1).wait_for_publish(5)
        ns.append(n)
    return ns


def test_twenty_commands_queued_offline_are_all_answered_on_one_connection(mqtt_world):
    w = mqtt_world
    m = w.start_meter("M5", keepalive=10)
    m.wait(lambda s: s["connected"], what="connected")
    m.stop()
    # more than the 8-slot inbox, and than Mosquitto's in-flight window
    ns = _queue_topups(w.he, "M5", 30, account=55)
    m = w.start_meter("M5", keepalive=10)
    t0 = time.monotonic()
    acks = [w.he.wait_ack("M5", n, timeout=30) for n in ns]
    took = time.monotonic() - t0
    assert [a["code"] for a in acks] == [TOPUP] * 30
    m.wait(lambda s: s["bal"] == 30_000, what="every top-up applied once")
    st = m.status()
    assert st["connects"] == 1 and st["failures"] == 0, (
        f"the backlog broke the connection: {st}")
    assert took < 30 / 5 + 5, f"30 commands took {took:.1f} s (documented: at least 5/s)"
    m.stop()


def test_burst_of_ten_thousand_messages_leaves_the_link_up(mqtt_world):
    w = mqtt_world
    he = w.he
    m = w.start_meter("M2", keepalive=10)
    m.wait(lambda s: s["connected"], what="connected")
    forged = b'{"n":1,"op":"get"}|' + b"0" * 64
    t0 = time.monotonic()
    for _ in range(10_000):
        he.client.publish("m/M2/c", forged, qos=1)
    # the broker queues the burst for the meter (tools/broker.py MAX_QUEUED);
    # the meter takes it at its own pace, and its own PUBACKs, queued behind
    # the burst, are not taken for a dead broker while the burst flows in
    # a command the broker dropped (its queue full of the burst) is sent
    # again, as a head-end does
    a = None
    while a is None and time.monotonic() - t0 < 90:
        try:
            a = he.get("M2", "state", timeout=3)
        except NoAck:
            a = None
    took = time.monotonic() - t0
    assert a["result"] == "accepted", a
    st = m.status()
    assert st["connects"] == 1 and st["failures"] == 0, f"the burst broke the link: {st}"
    assert took < 60, f"a command after the burst was answered after {took:.0f} s"
    print(f"burst of 10 000: a genuine command answered {took:.1f} s after the burst began")
    m.stop()


class FreezingProxy:
    """TCP relay to the broker; freeze() keeps the sockets open and stops
    passing bytes (a half-open link: no FIN, no RST)."""

    def __init__(self, host, port):
        self.up = (host, port)
        self.frozen = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns += 1
            u = socket.create_connection(self.up)
            gate = self.frozen.is_set()     # a connection made while frozen flows
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b, gate), daemon=True).start()

    def _pipe(self, a, b, born_frozen):
        try:
            while True:
                d = a.recv(4096)
                if not d:
                    break
                while self.frozen.is_set() and not born_frozen:
                    time.sleep(0.05)        # swallowed into the void: half-open
                b.sendall(d)
        except OSError:
            pass

    def close(self):
        self.ls.close()


def test_half_open_connection_is_dropped_and_the_link_comes_back(mqtt_world):
    w = mqtt_world
    px = FreezingProxy(w.broker.host, w.broker.port)
    try:
        m = w.start_meter("M6", mqtt={"host": "127.0.0.1", "port": px.port, "tls": True,
                                      "keepalive": 10, "backoff_max_s": 2, "timeout_ms": 2000})
        m.wait(lambda s: s["connected"], what="connected through the proxy")
        px.frozen.set()
        t0 = time.monotonic()
        # keepalive 10 s (the least config allows) + timeout 2 s + backoff <= 2 s
        m.wait(lambda s: s["failures"] >= 1 and s["connected"] and s["connects"] >= 2,
               timeout=30, what="half-open link detected and replaced")
        took = time.monotonic() - t0
        st = m.status()
        assert took <= 10 + 2 + 2 + 4, f"back after {took:.1f} s"
        assert px.conns >= 2 and st["err"]
        assert w.he.get("M6", "state")["result"] == "accepted"
        m.stop()
    finally:
        px.close()


def test_broker_refuses_an_oversized_command_and_the_meter_never_sees_it(mqtt_world):
    w = mqtt_world
    m = w.start_meter("M4", keepalive=10)
    m.wait(lambda s: s["connected"], what="connected")
    gone = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="big-sender")
    c.username_pw_set("headend", w.he_password)
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_disconnect = lambda *a: gone.set()
    c.connect(w.broker.host, w.broker.admin_port)
    c.loop_start()
    _n, topic, _ = w.he.sealed_command("M4", "get", w="state")
    c.publish(topic, b"x" * 100_000, qos=1)
    assert gone.wait(10), "the broker passed a 100 kB packet (max_packet_size not set)"
    c.loop_stop()
    st = m.status()
    assert st["connected"] and st["failures"] == 0 and st["rejected"] == 0
    assert w.he.get("M4", "state")["result"] == "accepted"
    m.stop()


class TinyBroker:
    """Just enough MQTT 3.1.1 to accept one meter and push it packets that
    Mosquitto (with max_packet_size) would never pass on."""

    def __init__(self, meter_id, sizes):
        self.topic = f"m/{meter_id}/c".encode()
        self.sizes = sizes
        self.pubacks = []
        self.acks_seen = 0
        self.events = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _publish(self, c, pid, payload):
        c.sendall(publish_qos1(self.topic, pid, payload))

    def _serve(self):
        try:
            c, _ = self.ls.accept()
            subs = 0
            while True:
                t, body = read_packet(c)
                answer(c, t, body)
                if t == 0x82:
                    subs += 1
                    if subs == 2:
                        for i, size in enumerate(self.sizes):
                            self._publish(c, 100 + i, b"x" * size)
                        self._publish(c, 200, b"not a command")   # must still be answered
                elif t == 0x40:
                    self.pubacks.append(int.from_bytes(body, "big"))
                elif t & 0xF0 == 0x30:
                    tl = int.from_bytes(body[:2], "big")
                    if body[2:2 + tl].endswith(b"/a"):
                        self.acks_seen += 1
                    if body[2:2 + tl].endswith(b"/e"):
                        self.events += codec.unbatch(body[2 + tl + (2 if t & 6 else 0):])
        except OSError:
            pass

    def close(self):
        self.ls.close()


def test_oversized_command_is_refused_by_length_and_the_link_stays_up(mqtt_world):
    w = mqtt_world
    tb = TinyBroker("M3", [100_000, 1 << 20])
    try:
        m = w.start_meter("M3", state_dir=w.tmp / "M3-tiny",
                          mqtt={"host": "127.0.0.1", "port": tb.port, "tls": False,
                                "keepalive": 10, "backoff_max_s": 2, "timeout_ms": 3000})
        wait_for(lambda: tb.acks_seen >= 1, timeout=30, what="the meter answering after 1.1 MB")
        # the broker pushes both while the meter still waits for its third
        # SUBACK, so the refusals may be counted before the session is up:
        # the status to check is the one after both
        m.wait(lambda s: s["rejected"] >= 2 and s["connected"],
               what="both refusals counted, then the session up")
        st = m.status()
        wait_for(lambda: len([e for e in tb.events if e["code"] == EV_MESSAGE_TOO_LONG]) == 2,
                 what="two message-too-long events")
        too_long = [e["arg"] for e in tb.events if e["code"] == EV_MESSAGE_TOO_LONG]
        head = 2 + len(tb.topic) + 2      # remaining length: topic length, topic, packet id
        assert sorted(too_long) == [100_000 + head, (1 << 20) + head]
        assert tb.pubacks[:2] == [100, 101], "oversized QoS 1 packets must be PUBACKed"
        assert 200 in tb.pubacks
        assert st["connected"] and st["failures"] == 0 and st["connects"] == 1, st
        assert st["rejected"] >= 2
        m.stop()
    finally:
        tb.close()
