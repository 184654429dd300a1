"""Simulated meters' uplink for the ingestion test and bench: telemetry and
event batches as a meter's outbox sends them (docs/PROTOCOL.md §3: one
sequence counter for all records, a run of one channel's records per
message, up to 16 records), built and sealed with the firmware's own codec
and each meter's uplink key (firmware/comms/codec.py, sign.py).

    msgs = outbox_messages(master, "S01", records=48, per_msg=8)   # [(topic, payload, n)]
    with MeterClient(master, "S01", host, port, ca_file) as c:     # as the meter: its user, TLS
        c.send(msgs)
"""

import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))
from comms import codec, sign

T0 = 1_780_000_000          # meter time of the first record (2026)
EVENT_EVERY = 5             # every 5th record is an event (a credit, a valve move ...)


def outbox_messages(master, meter_id, records, per_msg=16, report_s=3600, first_seq=1,
                    event_every=EVENT_EVERY):
    """The messages of `records` outbox records of one meter, oldest first:
    hourly telemetry with rising volume, and an event every event_every
    records (0: none); a run of one kind is split into messages of per_msg
    records."""
    uk = sign.uplink_key(sign.meter_key(master, meter_id))
    recs, evs, ml = [], 0, 0
    for i in range(records):
        seq, t = first_seq + i, T0 + i * report_s
        if event_every and i % event_every == event_every - 1:
            evs += 1
            r = codec.event(evs, t, 2, 1000 + i)            # event 2: credit, arg amount
        else:
            ml += 7_000 + (seq * 37) % 5_000              # 7-12 L an hour
            r = codec.tele(t, ml, 5_000_000 - ml, 500, codec.F_VALVE_OPEN, 1, evs, -70)
        codec.set_seq(r, seq)
        recs.append(r)
    out, run = [], []
    for r in recs + [None]:
        if run and (r is None or r[0] != run[0][0] or len(run) == per_msg):
            topic = f"m/{meter_id}/{codec.channel(run[0][0])}"
            out.append((topic, codec.seal_up(uk, topic, codec.batch(run)), len(run)))
            run = []
        if r is not None:
            run.append(r)
    return out


class MeterClient:
    """One simulated meter's MQTT connection: its own user and password
    (docs/PROTOCOL.md §4.2) on the meters' listener, MQTT 3.1.1, TLS when
    ca_file is given; or any user given with user=/password= (a replay)."""

    def __init__(self, master, meter_id, host, port, ca_file=None, user=None, password=None):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user or meter_id,
                             protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user or meter_id,
                               password if user else sign.mqtt_password(master, meter_id))
        if ca_file:
            self.c.tls_set(ca_certs=ca_file)
        self.c.max_inflight_messages_set(1)   # as the meter: one QoS 1 publish at a time
        self._up = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p=None: self._up.set()
        self.host, self.port = host, port

    def __enter__(self):
        self.c.connect(self.host, self.port, keepalive=30)
        self.c.loop_start()
        if not self._up.wait(10):
            raise OSError(f"no connection to {self.host}:{self.port}")
        return self

    def send(self, msgs, timeout=30):
        """Publish each (topic, payload, n) at QoS 1 and wait for its PUBACK."""
        for topic, payload, _ in msgs:
            self.c.publish(topic, payload, qos=1).wait_for_publish(timeout)

    def __exit__(self, *exc):
        self.c.disconnect()
        self.c.loop_stop()


if __name__ == "__main__":
    from libscript import not_a_command
    not_a_command(__doc__, "from uplinksim import outbox_messages, MeterClient  (tests/host/test_ingest.py, bench/bench_ingest.py)")
