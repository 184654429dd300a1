"""Ingestion workers: N processes split the meters' uplink between them
through MQTT shared subscriptions and store it (docs/HEADEND.md §Ingestion).

    python -m utility.ingest --db URL --master FILE --broker HOST:PORT [--ca CA.pem]
        --user ingest --password PW --workers-group G --slot K [--receive-max 64] [--batch 64]

Each worker subscribes to $share/G/m/+/t, /e, /s and /a (QoS 1, MQTT 5),
so the broker hands each message to one member of group G. What makes it
safe to kill one at any moment:

- A message is acknowledged (PUBACK) only after its records are committed.
  A worker that dies before that leaves the message unacknowledged. The
  messages already received (up to --batch) are stored together: a run of
  telemetry and events in one transaction, then acknowledged in the order
  received; if one of them cannot be stored, each is stored by itself.
- The worker's MQTT session is persistent (client id ingest-G-K, clean
  start off, no session expiry). Mosquitto 2.0 keeps a dead member's
  unacknowledged messages in its session, and goes on queueing its share
  of new ones there (it picks members round robin, connected or not: its
  src/subs.c subs__shared_process); the worker restarted under the same
  slot K gets them all. So a slot must be restarted (systemd Restart=),
  and the broker's max_queued_messages must hold what arrives meanwhile
  (tools/broker.py sets it).
- A message delivered twice (redelivered after a kill, or a meter's own
  resend) is stored once: telemetry and events by (meter, seq), acks by
  (meter, n, tag), and the admission checks do not depend on the order in
  which two workers store one meter's records (tools/headend.py ingest).

Exit status: 0 stopped by SIGTERM/SIGINT (the batch in hand committed and
acknowledged), 2 usage or connection error.
"""

import argparse
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import DBAPIError, OperationalError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

CHANNELS = ("t", "e", "s", "a")     # telemetry, events, online status, acks (PROTOCOL.md §2)
NEVER_EXPIRE = 0xFFFFFFFF           # MQTT 5 session expiry interval: the session outlives any outage
RETRY_S = (0.2, 5.0)                # back-off on a database error: first, longest


def client_id(group, slot):
    return f"ingest-{group}-{slot}"


def transient(exc):
    """A database error that a retry can cure (SQLite busy, a PostgreSQL
    connection lost or a serialization failure)."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


class Worker:
    """One member of the shared-subscription group. sink.ingest(meter,
    chan, payload) stores one message and returns after its commit."""

    def __init__(self, sink, group, slot, host, port, user=None, password=None, ca_file=None,
                 receive_max=64, batch=64, log=sys.stderr):
        self.sink = sink
        self.batch = batch
        self.group, self.slot = group, slot
        self.host, self.port = host, port
        self.log = log
        self.inbox = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        # a connection's number: an ack is only sent on the connection that
        # delivered the message (after a reconnect the broker re-sends it
        # under the same packet id, and that id may by then be another message's)
        self.generation = 0
        self.refused = None
        self.messages = self.records = self.bad = 0
        self.batched = 0        # messages stored in a transaction with others
        self.busy_s = 0.0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(group, slot),
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if user is not None:
            c.username_pw_set(user, password)
        if ca_file:
            c.tls_set(ca_certs=ca_file)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self.receive_max = receive_max
        self.client = c

    # ---------------- MQTT (paho's network thread) ----------------
    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            self.refused = str(rc)
            client.disconnect()   # the same credentials would be refused again
            self.stopping.set()
            self.connected.set()
            return
        self.generation += 1
        # the session is kept, but subscribing again is harmless and makes a
        # first start (or a broker that lost its persistence file) work
        client.subscribe([(f"$share/{self.group}/m/+/{ch}", 1) for ch in CHANNELS])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props=None):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self.inbox.put((self.generation, msg))

    # ---------------- storing (the worker's own thread) ----------------
    def start(self, timeout=10):
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = NEVER_EXPIRE
        # how many unacknowledged messages the broker may have out to us
        props.ReceiveMaximum = self.receive_max
        self.client.connect(self.host, self.port, keepalive=30, clean_start=False,
                            properties=props)
        self.client.loop_start()
        if not self.connected.wait(timeout) or self.refused:
            self.client.loop_stop()
            raise OSError(f"broker {self.host}:{self.port} did not accept "
                          f"{client_id(self.group, self.slot)}: {self.refused or 'no answer'}")
        return self

    def run(self):
        """Store and acknowledge until stop(); the messages in hand are finished first.
        The messages waiting in the inbox (up to `batch`, none waited for) are
        taken together: a run of telemetry and events is stored in one
        transaction, and each message is acknowledged, in the order received,
        after the commit that stored it."""
        while not self.stopping.is_set():
            try:
                got = [self.inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(got) < self.batch:
                try:
                    got.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            t0 = time.monotonic()
            run = []            # consecutive telemetry and event messages
            for gen, msg in got:
                parts = msg.topic.split("/")
                if len(parts) != 3 or parts[0] != "m" or parts[2] not in CHANNELS:
                    item = None
                else:
                    item = (parts[1], parts[2], msg.payload)
                if item is not None and item[1] in ("t", "e"):
                    run.append((gen, msg, item))
                    continue
                self._flush(run)
                run = []
                if item is not None:
                    self._store(msg.topic, lambda item=item: [self.sink.ingest(*item)])
                self._ack(gen, msg)
            self._flush(run)
            self.busy_s += time.monotonic() - t0
        self.client.disconnect()     # the session (and anything unacknowledged) stays on the broker
        self.client.loop_stop()

    def _ack(self, gen, msg):
        if gen == self.generation:
            self.client.ack(msg.mid, msg.qos)

    def _flush(self, run):
        """Store a run of telemetry and event messages in one transaction,
        then acknowledge them; if one of them cannot be stored, each is
        stored (or logged) by itself instead."""
        if not run:
            return
        items = [item for _, _, item in run]
        if len(run) == 1 or not self._store(f"{len(run)} messages together",
                                            lambda: self.sink.ingest_records(items), alone=True):
            for gen, msg, item in run:
                self._store(msg.topic, lambda item=item: [self.sink.ingest(*item)])
                self._ack(gen, msg)
            return
        self.batched += len(run)
        for gen, msg, _ in run:
            self._ack(gen, msg)

    def _store(self, what, store, alone=False):
        """store() -> new records per message, retried while the error is
        transient; False if it failed otherwise (logged; alone: the
        messages will be stored one by one)."""
        wait = RETRY_S[0]
        while True:
            try:
                counts = store()
                self.messages += len(counts)
                self.records += sum(n or 0 for n in counts)
                return True
            except Exception as e:  # noqa: BLE001 - sorted below: retry, or log and go on
                if not transient(e):
                    if alone:
                        print(f"ingest: cannot store {what} ({e!r}): each by itself",
                              file=self.log)
                    else:
                        # malformed content under a valid tag: logged, acknowledged,
                        # so one bad message cannot hold the slot
                        self.bad += 1
                        print(f"ingest: cannot store {what}: {e!r}", file=self.log)
                    return False
                if self.stopping.is_set():
                    raise SystemExit(f"ingest: stopped with {what} unstored: {e}") from None
                print(f"ingest: database error on {what}, retrying in {wait:g} s: {e}",
                      file=self.log)
                time.sleep(wait)
                wait = min(wait * 2, RETRY_S[1])

    def stop(self):
        self.stopping.set()

    def summary(self):
        rate = self.records / self.busy_s if self.busy_s else 0.0
        return (f"ingest {client_id(self.group, self.slot)}: {self.messages} messages, "
                f"{self.records} records, {self.bad} bad, {self.busy_s:.2f} s storing "
                f"({rate:.0f} records/s), {self.batched} messages stored in batches")


def open_sink(db, master):
    """The store a worker writes to: the reference head-end's ingestion, not
    connected to the broker itself."""
    from headend import HeadEnd, read_master
    return HeadEnd(db, read_master(master))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m utility.ingest", description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="database: a SQLite path or a SQLAlchemy URL")
    ap.add_argument("--master", required=True, help="master key file (uplink tags are checked)")
    ap.add_argument("--broker", required=True, help="HOST:PORT of the head-end's listener")
    ap.add_argument("--ca", help="CA file: use TLS")
    ap.add_argument("--user", default=os.environ.get("INGEST_USER"))
    ap.add_argument("--password", default=os.environ.get("INGEST_PASSWORD"))
    ap.add_argument("--workers-group", required=True, metavar="G", help="shared-subscription group")
    ap.add_argument("--slot", required=True, help="this worker's fixed name in the group "
                    "(its session: restart a dead worker under the same slot)")
    ap.add_argument("--receive-max", type=int, default=64,
                    help="unacknowledged messages the broker may send ahead")
    ap.add_argument("--batch", type=int, default=64,
                    help="most messages stored in one transaction (those already received)")
    args = ap.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        ap.error(f"--broker wants HOST:PORT, got {args.broker!r}")
    if not 1 <= args.receive_max <= 65535:
        ap.error("--receive-max is 1..65535")
    if args.batch < 1:
        ap.error("--batch is at least 1")
    for name in (args.workers_group, args.slot):
        if not name or any(c in name for c in "/+#"):
            ap.error(f"group and slot names may not be empty or hold / + #: {name!r}")
    try:
        sink = open_sink(args.db, args.master)
    except Exception as e:  # noqa: BLE001 - any failure to open is a usage error here
        print(f"ingest: cannot open {args.db}: {e}", file=sys.stderr)
        return 2
    w = Worker(sink, args.workers_group, args.slot, host, int(port), args.user, args.password,
               args.ca, args.receive_max, args.batch)

    def stop(*_):
        w.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        w.start()
    except (OSError, ValueError) as e:
        print(f"ingest: cannot reach broker {args.broker}: {e}", file=sys.stderr)
        return 2
    print(f"ingest {client_id(args.workers_group, args.slot)}: subscribed to "
          f"$share/{args.workers_group}/m/+/{{{','.join(CHANNELS)}}} on {args.broker}", flush=True)
    w.run()
    print(w.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
