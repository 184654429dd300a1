"""A second head-end, written from docs/PROTOCOL.md alone, against a
simulated meter started with the documented command (tools/simmeter.py) on
the project's broker (Mosquitto with TLS, passwords, ACL).

Nothing here imports tools/headend.py or firmware code: keys, envelopes,
acks and uplink records are built and parsed from the document's text with
paho-mqtt, hmac, hashlib, json, struct, and `cryptography` for the office's
ECDSA P-256 signature (§4.7). What the document left unclear
was fixed in the document, not worked around here.
"""

import hashlib
import hmac
import json
import queue
import secrets
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from broker import Broker, meter_acl  # the project's broker, as it configures it
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ROOT = Path(__file__).resolve().parents[2]
METER, REGION = "IND0001", 3

# -- PROTOCOL.md §5: result codes --
ACCEPTED, USED, FORMAT, RANGE, OLD = 0, 1, 2, 3, 4


# -- PROTOCOL.md §4.2: keys --
def derive(master, label):
    return hmac.new(master, label.encode("ascii"), hashlib.sha256).digest()


def keys(master, meter_id):
    mk = derive(master, "meter/" + meter_id)
    return {"mk": mk, "pw": derive(master, "mqtt/" + meter_id)[:16].hex(),
            "uk": hmac.new(mk, b"uplink", hashlib.sha256).digest()}      # §3.2


# -- PROTOCOL.md §3.2: the uplink tag --
def tag(uk, topic, body: bytes) -> bytes:
    return hmac.new(uk, topic.encode() + b"\n" + body, hashlib.sha256).digest()[:16]


def untag(uk, topic, p: bytes):
    """The body of an uplink message, or None if its tag is not the meter's."""
    body, t = p[:-16], p[-16:]
    return body if len(p) > 16 and hmac.compare_digest(tag(uk, topic, body), t) else None


def test_key_derivation_matches_the_documented_vector():
    k = keys(bytes(range(32)), "M000123")
    assert k["mk"].hex() == "6b3624caff7ac81059b78ee6e124ad2ae0f434f50f9232dd15e888d023640bc2"
    assert k["pw"] == "c3674ac9e2f3025b5f58420c57cded38"
    assert k["uk"].hex() == "1435bc88147977443fefc2f3cb90501589efb510e8f04c1c13b9dc576e689cc4"
    assert tag(k["uk"], "m/M000123/a", b"\x02" + bytes(21)).hex() == "a914fed7ee7fbef6935fe78ce7b61583"


# -- PROTOCOL.md §4.1: the envelope --
def seal(key, topic, body: bytes) -> bytes:
    mac = hmac.new(key, topic.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    return body + b"|" + mac.encode()


# -- PROTOCOL.md §4.7: office-signed documents --
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def office_public_hex(key):
    n = key.public_key().public_numbers()
    return (n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")).hex()


def office_doc(key, purpose: bytes, doc: dict) -> bytes:
    body = json.dumps(doc, separators=(",", ":")).encode()
    r, s = decode_dss_signature(key.sign(b"wm1/" + purpose + b"/" + body, ec.ECDSA(hashes.SHA256())))
    if s > (P256_N - 1) // 2:
        s = P256_N - s                       # low s: the one signature the meter takes
    return body + b"|" + (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex().encode()


# -- PROTOCOL.md §5: acks --
def parse_ack(p: bytes):
    ver, n, code, val, h = struct.unpack(">BIBq8s", p[:22])
    assert ver == 2
    return {"n": n, "code": code, "val": val, "h": h,
            "detail": json.loads(p[22:]) if len(p) > 22 else None}


# -- PROTOCOL.md §3.2-3.3: uplink batches --
TELE = (">BIIQqIHIIb", ("kind", "seq", "t", "ml", "bal", "flow", "flags", "tv", "evs", "rssi"))
EVENT = (">BIIIHq", ("kind", "seq", "evs", "t", "code", "arg"))
SUMMARY = (">BIIIIIQQqH", ("kind", "seq", "last", "n", "t0", "t1", "ml0", "ml1", "bal", "dropped"))
KINDS = {1: TELE, 2: EVENT, 3: SUMMARY}


def parse_batch(p: bytes):
    assert p[0] == 2, "batch version"
    off, out = 1, []
    while off < len(p):
        fmt, names = KINDS[p[off]]
        size = struct.calcsize(fmt)
        assert size == {1: 40, 2: 23, 3: 47}[p[off]]           # the sizes §3.2 states
        r = dict(zip(names, struct.unpack_from(fmt, p, off)))
        if r["kind"] == 1:
            r["why"], r["low"] = (r["flags"] >> 1) & 15, (r["flags"] >> 5) & 3
        out.append(r)
        off += size
    return out


class HeadEnd:
    """The utility's side, from the document."""

    def __init__(self, host, port, ca, user, password, master):
        self.k = keys(master, METER)
        self.acks, self.records, self.status = queue.Queue(), queue.Queue(), queue.Queue()
        self.forged = []          # uplink messages whose tag is not the meter's
        self.n = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
        c.username_pw_set(user, password)
        c.tls_set(ca_certs=ca)
        c.on_message = self._on_message
        up = queue.Queue()
        c.on_connect = lambda cl, ud, fl, rc, pr=None: up.put(rc)
        c.connect(host, port)
        c.loop_start()
        assert up.get(timeout=30) == 0
        c.subscribe(f"m/{METER}/#", qos=1)
        self.c = c

    def _on_message(self, cl, ud, msg):
        kind = msg.topic.rsplit("/", 1)[1]
        if kind in ("a", "t", "e"):
            body = untag(self.k["uk"], msg.topic, msg.payload)
            if body is None:
                self.forged.append((msg.topic, msg.payload))
                return
        if kind == "a":
            self.acks.put(parse_ack(body))
        elif kind in ("t", "e"):
            for r in parse_batch(body):
                self.records.put(r)
        elif kind == "s":
            self.status.put(msg.payload)

    def send(self, body: bytes, timeout=60):   # generous: the suite may share a loaded machine
        topic = f"m/{METER}/c"
        msg = seal(self.k["mk"], topic, body)
        self.c.publish(topic, msg, qos=1)
        a = self.acks.get(timeout=timeout)
        assert a["h"] == hashlib.sha256(msg).digest()[:8], "the ack answers another message"
        return a

    def command(self, op, **fields):
        self.n += 1
        body = json.dumps(dict(n=self.n, op=op, **fields), separators=(",", ":")).encode()
        a = self.send(body)
        assert a["n"] == self.n, a
        return a

    def wait_record(self, pred, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.records.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pred(r):
                return r
        raise AssertionError("no such record in time")


@pytest.fixture()
def world(tmp_path):
    master = secrets.token_bytes(32)
    k = keys(master, METER)
    he_pw = secrets.token_hex(8)
    b = Broker(tls=True, users={METER: k["pw"], "headend": he_pw},
               acl=meter_acl({METER: REGION}, ["headend"])).start()
    he = HeadEnd(b.host, b.admin_port, b.ca_file, "headend", he_pw, master)   # §1: its own listener
    # provisioning, as §4.2 describes the meter's secrets.json
    sec = tmp_path / "secrets-in.json"
    office = ec.generate_private_key(ec.SECP256R1())
    sec.write_text(json.dumps({"id": METER, "mk": k["mk"].hex(), "user": METER, "pw": k["pw"],
                               "office": {"1": office_public_hex(office)}, "office_min_rev": 1}))
    state = tmp_path / "meter"
    cmd = [sys.executable, str(ROOT / "tools" / "simmeter.py"), "--state", str(state),
           "--secrets", str(sec), "--region", str(REGION), "--broker", f"{b.host}:{b.port}",
           "--tls", "--ca", b.ca_file, "--keepalive", "10", "--speed", "60"]
    procs = []

    def start():
        log = open(tmp_path / "simmeter.log", "ab")  # noqa: SIM115 - lives with the process
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def stop():
        p = procs.pop()
        p.send_signal(signal.SIGINT)
        p.wait(20)

    start()
    yield he, office, start, stop
    while procs:
        p = procs.pop()
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
    he.c.loop_stop()
    he.c.disconnect()
    b.stop()


def test_an_independent_head_end_interoperates(world):
    he, office, start, stop = world
    assert he.status.get(timeout=90) == b"1"                 # §2: online, retained
    boot = he.wait_record(lambda r: r["kind"] == 1)          # §3.3: one at boot
    assert boot["bal"] == 0 and boot["flags"] & 1 == 0 and boot["why"] == 1   # closed: no credit

    a = he.command("get", w="state")
    assert a["code"] == ACCEPTED and a["detail"]["id"] == METER and a["detail"]["n"] == 1

    # a signed top-up, then the same credit again under a new counter
    a = he.command("topup", a=1, s=1, v=5_000_000)
    assert (a["code"], a["val"]) == (ACCEPTED, 5_000_000)
    assert he.command("topup", a=1, s=1, v=5_000_000)["code"] == USED
    ev = he.wait_record(lambda r: r["kind"] == 2 and r["code"] == 2)   # event 2 credit
    assert ev["arg"] == 5_000_000

    # a replayed counter is old and answers the meter's counter
    old = he.send(json.dumps({"n": 1, "op": "get"}, separators=(",", ":")).encode())
    assert (old["code"], old["val"]) == (OLD, he.n)

    # a setting, read back, then the telemetry it drives (report_s 10 s)
    assert he.command("cfg", k="report_s", v=10)["code"] == ACCEPTED
    assert he.command("get", w="cfg")["detail"]["report_s"] == 10
    t = he.wait_record(lambda r: r["kind"] == 1 and r["bal"] == 5_000_000)
    assert t["tv"] == 1 and t["low"] == 0

    # typed fields and duplicate keys, end to end (§4.4 checks)
    assert he.command("valve", o="0")["code"] == FORMAT
    he.n += 1
    dup = b'{"n":%d,"op":"valve","o":0,"o":1}' % he.n
    assert he.send(dup)["code"] == FORMAT
    assert he.command("valve", o=1)["code"] == ACCEPTED

    # a tariff for this meter (§4.4 op tariff, §4.3 fields): acked with its version,
    # in force at once (at 0), then in telemetry; one without sc is format
    tar = {"v": 7, "at": 0, "b": [[1000, 400_000], [0, 800_000]], "sc": 0}
    assert he.command("tariff", tar={k: v for k, v in tar.items() if k != "sc"})["code"] == FORMAT
    a = he.command("tariff", tar=tar)
    assert (a["code"], a["val"]) == (ACCEPTED, 7)
    assert he.wait_record(lambda r: r["kind"] == 1 and r["tv"] == 7)

    # an office-signed region tariff, retained (§4.3, §4.7): acked with n 0 and its version
    rt = f"r/{REGION}/tariff"
    doc = {"k": "tariff", "r": REGION, "v": 8, "at": 0, "b": [[0, 600_000]], "sc": 0}
    region_msg = office_doc(office, b"tariff", doc)
    he.c.publish(rt, region_msg, qos=1, retain=True)
    a = he.acks.get(timeout=60)
    assert (a["n"], a["code"], a["val"]) == (0, ACCEPTED, 8), a
    assert a["h"] == hashlib.sha256(region_msg).digest()[:8]

    assert he.wait_record(lambda r: r["kind"] == 1 and r["tv"] == 8)

    # a restart keeps the setting and the clock goes on
    last_t = he.command("get", w="state")["detail"]["t"]
    stop()
    start()
    assert he.command("get", w="cfg")["detail"]["report_s"] == 10
    s = he.command("get", w="state")["detail"]
    assert s["t"] >= last_t and s["bal"] <= 5_000_000 and s["tv"] == 8
    assert he.forged == []                                   # every uplink message carried its tag
