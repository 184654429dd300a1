"""Ingestion workers (utility/ingest.py) end to end: real Mosquitto with TLS,
passwords and ACLs; simulated meters publishing sealed outbox batches as
their own broker users (tools/uplinksim.py) and one firmware meter on the
unix port; two workers in one shared-subscription group, one of them
SIGKILLed mid-stream and restarted. Every record is stored exactly once,
no admission alarm is raised by the order in which two workers store one
meter's records, and a command's ack reaches the head-end that waits for
it although a worker stored it."""

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from broker import Broker, meter_acl
from comms import codec, sign
from conftest import MeterProc, sql, wait_for
from headend import HeadEnd
from office import OfficeKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from uplinksim import MeterClient, outbox_messages

from utility.ingest import Worker

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SIMS = [f"S{i:02d}" for i in range(1, 13)]        # simulated meters' publishers
RECORDS = 240                                     # outbox records per simulated meter
ADMISSION = ("seq_jump", "seq_conflict", "rollback", "forged_uplink", "ack_mismatch")


class IngestWorld:
    def __init__(self, tmp, db):
        self.tmp = Path(tmp)
        self.db = db
        self.master = os.urandom(32)
        self.master_file = self.tmp / "master.key"
        self.master_file.write_text(self.master.hex())
        self.meters = {m: 1 for m in SIMS} | {"U1": 1}
        self.he_pw, self.ingest_pw = os.urandom(8).hex(), os.urandom(8).hex()
        users = {m: sign.mqtt_password(self.master, m) for m in self.meters}
        users |= {"headend": self.he_pw, "ingest": self.ingest_pw}
        self.broker = Broker(tls=True, users=users, admins=("headend", "ingest"),
                             acl=meter_acl(self.meters, ["headend"], readers=["ingest"])).start()
        # the operators' head-end: commands out, acks from the database
        self.he = HeadEnd(db, self.master, self.broker.host, self.broker.admin_port, "headend",
                          self.he_pw, self.broker.ca_file, "headend-ops", persistent=True,
                          office=OfficeKey.generate(), ingest=False).connect()
        for m, r in self.meters.items():
            self.he.provision(m, r)
        self.workers = {}

    def worker(self, slot):
        log = open(self.tmp / f"worker{slot}.log", "ab")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(
            [PYTHON, "-m", "utility.ingest", "--db", str(self.db), "--master", str(self.master_file),
             "--broker", f"{self.broker.host}:{self.broker.admin_port}", "--ca", self.broker.ca_file,
             "--user", "ingest", "--password", self.ingest_pw, "--workers-group", "g",
             "--slot", str(slot), "--receive-max", "16"],
            cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
        self.workers[slot] = p
        wait_for(lambda: b"subscribed" in (self.tmp / f"worker{slot}.log").read_bytes(),
                 what=f"worker {slot} subscribed")
        return p

    def log(self, slot):
        return (self.tmp / f"worker{slot}.log").read_text(errors="replace")

    def count(self, meter=None):
        q = "SELECT (SELECT COUNT(*) FROM telemetry{w}) + (SELECT COUNT(*) FROM events{w})"
        if meter is None:
            return sql(self.he, q.format(w=""))[0][0]
        return sql(self.he, q.format(w=" WHERE meter = :m"), m=meter)[0][0]

    def close(self):
        for p in self.workers.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self.he.close()
        self.broker.stop()
        self.broker._dir.cleanup()


@pytest.fixture()
def world(tmp_path, store_url):
    """Once on SQLite, once on PostgreSQL."""
    w = IngestWorld(tmp_path, store_url)
    yield w
    w.close()


def _publish(w, meter, msgs):
    with MeterClient(w.master, meter, w.broker.host, w.broker.port, w.broker.ca_file) as c:
        c.send(msgs)


def test_two_workers_one_killed_mid_stream_store_every_record_once(world):
    w = world
    w.worker(1)
    w.worker(2)
    # the firmware meter: its own outbox, seq and tags, over TLS
    d = w.tmp / "U1"
    w.he.provision("U1", 1, d, {"host": w.broker.host, "port": w.broker.port, "tls": True,
                                "keepalive": 10, "backoff_max_s": 2, "timeout_ms": 3000},
                   w.broker.ca_pem)
    c = json.loads((d / "config.json").read_text())
    c.update(report_s=60, reopen="auto", friendly_hours=[0, 0], friendly_days=[])
    (d / "config.json").write_text(json.dumps(c))
    u1 = MeterProc(w, "U1", d, 120).start()
    try:
        wait_for(lambda: u1.status()["connected"], what="U1 connected")
        plan = {m: outbox_messages(w.master, m, RECORDS, per_msg=4) for m in SIMS}
        pubs = [threading.Thread(target=_publish, args=(w, m, msgs)) for m, msgs in plan.items()]
        for t in pubs:
            t.start()
        total = len(SIMS) * RECORDS
        wait_for(lambda: w.count() >= total // 4, timeout=60, what="a quarter stored")
        w.workers[1].send_signal(signal.SIGKILL)      # mid-stream: nothing said, nothing saved
        w.workers[1].wait(5)
        killed_at = w.count()
        assert killed_at < total * 3 // 4, "the kill must hit while the workers have a backlog"
        time.sleep(1.0)
        w.worker(1)                                   # the same slot: its session, its messages
        for t in pubs:
            t.join(120)
        # a command while the workers store: its ack is stored by one of them
        a = w.he.get("U1", "state", timeout=20)
        assert a["code"] == 0 and a["detail"]["id"] == "U1"
        top = w.he.topup("U1", 1_000_000, timeout=20)
        assert top["code"] == 0
        wait_for(lambda: w.he.topup_status("U1", 1, top["seq"])["status"] == "applied",
                 what="top-up settled by a worker")
        # everything U1's outbox has sent (PUBACKed by the broker) by now
        sent = u1.wait(lambda s: s["outbox"] == 0 and s, what="U1 sent all")["ob_next"] - 1
        wait_for(lambda: all(w.count(m) == RECORDS for m in SIMS), timeout=90,
                 what=f"every record stored (killed at {killed_at} of {total}): "
                      f"{ {m: w.count(m) for m in SIMS} }")
        wait_for(lambda: w.count("U1") >= sent, timeout=30,
                 what=f"U1's {sent} records (has {w.count('U1')})")
    finally:
        u1.kill()
    for table in ("telemetry", "events"):
        rows, keys = sql(w.he, f"SELECT COUNT(*), COUNT(DISTINCT meter || '/' || seq) FROM {table}")[0]
        assert rows == keys, f"{table}: {rows - keys} records stored twice"
    seqs = sorted(s for (s,) in sql(
        w.he, "SELECT seq FROM telemetry WHERE meter = 'U1' UNION ALL SELECT seq FROM events WHERE "
        "meter = 'U1'"))
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= sent, \
        "U1's outbox sequence stored gap-free, once each"
    acks = sql(w.he, "SELECT COUNT(*) FROM acks WHERE meter = 'U1' AND n = :n", n=a["n"])[0]
    assert acks[0] == 1, "an ack delivered once stored once"
    alarms = sql(w.he, "SELECT meter, kind, detail FROM alarms WHERE kind IN ("
                 + ", ".join(f"'{k}'" for k in ADMISSION) + ")")
    assert alarms == [], f"admission alarms from out-of-order storing: {alarms}"
    # the restarted slot got the killed worker's unacknowledged messages back
    for slot in (1, 2):
        w.workers[slot].send_signal(signal.SIGTERM)
        assert w.workers[slot].wait(10) == 0, w.log(slot)
    print(w.log(1), w.log(2), sep="\n")
    assert "0 messages" not in w.log(1).splitlines()[-1], "the restarted slot received nothing"


class _Acks:
    """Where run() sends its acknowledgements, in place of the paho client:
    the broker's part is test_two_workers_one_killed_mid_stream_store_every_record_once."""

    def __init__(self):
        self.acked = []

    def ack(self, mid, qos):
        self.acked.append(mid)

    def disconnect(self):
        pass

    def loop_stop(self):
        pass


def test_a_batch_holding_a_malformed_message_stores_the_rest_and_acknowledges_all(store_url):
    """A worker stores the messages waiting in its inbox (up to --batch) in
    one transaction. One among them with a valid tag and content that
    cannot be decoded fails that transaction; the worker then stores each
    of its messages by itself: every good record is stored once, the bad
    message logged once, and every message acknowledged, in the order
    received (a status message and a foreign topic in the stream too)."""
    master = os.urandom(32)
    sink = HeadEnd(store_url, master)
    log = io.StringIO()
    w = Worker(sink, "g", "1", "127.0.0.1", 1, log=log)
    w.client = _Acks()
    each = [outbox_messages(master, m, 40, per_msg=2) for m in SIMS[:4]]
    msgs = [(t, p) for k in range(max(map(len, each))) for one in each for t, p, _ in one[k:k + 1]]
    uk = sign.uplink_key(sign.meter_key(master, "S02"))
    msgs.insert(30, ("m/S02/t", codec.seal_up(uk, "m/S02/t", bytes([codec.VERSION, 0xEE, 1, 2]))))
    msgs.insert(50, ("m/S03/s", b"1"))
    msgs.insert(60, ("x/S03/t", b"not ours"))
    for i, (t, p) in enumerate(msgs):
        w.inbox.put((w.generation, SimpleNamespace(topic=t, payload=p, mid=i + 1, qos=1)))
    run = threading.Thread(target=w.run)
    run.start()
    try:
        wait_for(lambda: len(w.client.acked) == len(msgs), what="every message acknowledged")
    finally:
        w.stop()
        run.join(30)
    assert w.client.acked == list(range(1, len(msgs) + 1))
    for m in SIMS[:4]:
        assert sql(sink, "SELECT (SELECT COUNT(*) FROM telemetry WHERE meter = :m) + "
                   "(SELECT COUNT(*) FROM events WHERE meter = :m)", m=m) == [(40,)], m
    out = log.getvalue()
    assert out.count("cannot store m/S02/t") == 1 and out.count("together") == 1, out
    assert (w.messages, w.bad) == (len(msgs) - 2, 1)
    assert w.batched >= len(msgs) - 64, "the messages after the first 64 were stored together"
    sink.engine.dispose()


def test_worker_refuses_bad_arguments_and_a_broker_that_refuses_it(world, tmp_path):
    w = world
    base = [PYTHON, "-m", "utility.ingest", "--db", str(w.db), "--master", str(w.master_file),
            "--workers-group", "g"]
    bad = subprocess.run(base + ["--broker", "nohost", "--slot", "1"], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    bad = subprocess.run(base + ["--broker", "h:1", "--slot", "a/b"], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "/ + #" in bad.stderr
    wrong = subprocess.run(base + ["--broker", f"{w.broker.host}:{w.broker.admin_port}", "--slot", "1",
                                   "--ca", w.broker.ca_file, "--user", "ingest", "--password", "wrong"],
                           cwd=str(ROOT), capture_output=True, text=True, timeout=30, check=False)
    assert wrong.returncode == 2 and "did not accept" in wrong.stderr, wrong.stderr


def test_a_lost_database_connection_is_retried_and_nothing_is_lost(tmp_path, pg_url):
    """PostgreSQL drops the workers' connections mid-stream (a failover, a
    restart): the message in hand is retried, unacknowledged meanwhile."""
    w = IngestWorld(tmp_path, pg_url)
    try:
        w.worker(1)
        w.worker(2)
        sims = SIMS[:6]
        pubs = [threading.Thread(target=_publish, args=(w, m, outbox_messages(w.master, m, 120, 2)))
                for m in sims]
        for t in pubs:
            t.start()
        for _ in range(3):
            wait_for(lambda: w.count() > 0, what="records arriving")
            sql(w.he, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "datname = current_database() AND pid <> pg_backend_pid()")
            time.sleep(0.3)
        for t in pubs:
            t.join(120)
        wait_for(lambda: all(w.count(m) == 120 for m in sims), timeout=60,
                 what=f"every record stored: { {m: w.count(m) for m in sims} }")
        [(rows, keys)] = sql(w.he, "SELECT COUNT(*), COUNT(DISTINCT meter || '/' || seq) FROM telemetry")
        assert rows == keys
        logs = w.log(1) + w.log(2)
        assert "database error" in logs, "the connections were not lost: nothing was tested"
    finally:
        w.close()


def test_mosquitto_keeps_a_dead_members_share_in_its_session(tmp_path):
    """What the workers rely on (docs/HEADEND.md "Ingestion"): Mosquitto
    gives a dead member of a shared subscription its round-robin share,
    keeps it with the member's unacknowledged messages in its persistent
    session, hands none of it to the survivor, and delivers all of it when
    the same client id comes back."""
    w = IngestWorld(tmp_path, f"sqlite:///{tmp_path / 'he.sqlite'}")
    got = {"a": [], "b": []}

    def member(name, ack):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ingest-x-{name}",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.username_pw_set("ingest", w.ingest_pw)
        c.tls_set(ca_certs=w.broker.ca_file)
        up = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: (cl.subscribe("$share/x/m/+/t", 1), up.set())

        def on_message(cl, u, m):
            got[name].append((m.payload, m.dup))
            if ack:
                cl.ack(m.mid, m.qos)
        c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0xFFFFFFFF
        c.connect(w.broker.host, w.broker.admin_port, clean_start=False, properties=props)
        c.loop_start()
        assert up.wait(10)
        return c

    try:
        a, b = member("a", ack=False), member("b", ack=True)
        time.sleep(0.5)
        with MeterClient(w.master, "S01", w.broker.host, w.broker.port, w.broker.ca_file) as m:
            m.send([("m/S01/t", b"%d" % i, 1) for i in range(20)])
            wait_for(lambda: len(got["a"]) + len(got["b"]) == 20, what="first 20 delivered")
            a.loop_stop()
            a.socket().close()                  # dies: no DISCONNECT, nothing acknowledged
            m.send([("m/S01/t", b"%d" % i, 1) for i in range(20, 40)])
            time.sleep(1.0)
        assert len(got["b"]) == 20, f"the survivor got the dead member's share: {len(got['b'])}"
        held = len(got["a"])
        got["a"].clear()
        a = member("a", ack=True)              # the same slot again
        wait_for(lambda: len(got["a"]) == 40 - len(got["b"]), what="the dead member's share")
        assert sum(dup for _, dup in got["a"]) == held, "its unacknowledged ones came again, DUP"
        assert {p for p, _ in got["a"] + got["b"]} == {b"%d" % i for i in range(40)}
        for c in (a, b):
            c.disconnect()
            c.loop_stop()
    finally:
        w.close()
