# MQTT link of the meter, on micropython-lib's umqtt.simple.
#
# umqtt.simple blocks, so this wrapper keeps every call short: it connects
# only when the network is up, backs off between failed attempts, reads with
# check_msg() (non-blocking), pings on its own schedule and drops the
# connection on any socket error. Metering never waits on it: the meter task
# runs whatever state this link is in.
#
# Topics (docs/PROTOCOL.md):  m/<id>/t telemetry   m/<id>/e events
#   m/<id>/s status (retained, Last Will "0")   m/<id>/c commands in
#   m/<id>/a acks   r/<region>/tariff region tariff broadcast (retained)
import json

from comms.sign import hmac_sha256, equal


class MqttLink:
    def __init__(self, cfg, meter, net, clock, client_factory, region_key=None):
        self.cfg = cfg
        self.meter = meter
        self.net = net
        self.clock = clock
        self._factory = client_factory
        self._region_key = region_key
        mid = cfg["meter_id"]
        self.t_tele = b"m/%s/t" % mid
        self.t_events = b"m/%s/e" % mid
        self.t_status = b"m/%s/s" % mid
        self.t_cmd = b"m/%s/c" % mid
        self.t_ack = b"m/%s/a" % mid
        self.t_tariff = b"r/%d/tariff" % cfg["region"]
        self.client = None
        self.connected = False
        self.backoff_ms = 1000
        self._next_try = 0
        self._next_report = 0
        self._last_ping = 0
        self.report_seq = 0
        self.sent = 0
        self.received = 0
        self.on_traffic = None   # fn(direction, topic, payload) for the simulator display
        self._events_sent = meter.log.seq

    def _connect(self):
        m = self.cfg["mqtt"]
        c = self._factory(self.cfg["meter_id"], m["host"], m["port"], m.get("keepalive", 60))
        c.set_callback(self._on_message)
        c.set_last_will(self.t_status, b"0", retain=True)
        c.connect()
        c.subscribe(self.t_cmd)
        c.subscribe(self.t_tariff)
        self.client = c
        self.connected = True
        self.backoff_ms = 1000
        self._publish(self.t_status, b"1", retain=True)
        self._last_ping = self.clock.ticks_ms()

    def _drop(self):
        self.connected = False
        try:
            self.client.sock.close()
        except Exception:
            pass
        self.client = None

    def _publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, retain)
        self.sent += 1
        if self.on_traffic:
            self.on_traffic("out", topic, payload)

    def _on_message(self, topic, msg):
        self.received += 1
        if self.on_traffic:
            self.on_traffic("in", topic, msg)
        if topic == self.t_tariff:
            self._on_tariff(msg)

    def _on_tariff(self, msg):
        # Region tariff: "<json>|<hex hmac>" signed with the region key.
        body, _, mac = msg.rpartition(b"|")
        if self._region_key is None or not body:
            return
        want = hmac_sha256(self._region_key, self.t_tariff + b"\n" + body)
        try:
            got = bytes.fromhex(mac.decode())
        except ValueError:
            got = b""
        if not equal(want, got):
            return
        try:
            d = json.loads(body)
        except ValueError:
            return
        self.meter.stage_tariff(d)

    def report(self):
        s = self.meter.snapshot()
        self.report_seq += 1
        s["seq"] = self.report_seq
        self._publish(self.t_tele, json.dumps(s).encode())

    def step(self):
        """One short, bounded turn of the link; called from the comms task."""
        now = self.clock.ticks_ms()
        if not self.connected:
            if self.clock.ticks_diff(now, self._next_try) < 0:
                return
            try:
                if self.net.connect():
                    self._connect()
                    self._next_report = now
            except (OSError, IndexError, AssertionError, Exception):
                self._drop()
                self._next_try = self.clock.ticks_add(now, self.backoff_ms)
                self.backoff_ms = min(self.backoff_ms * 2, 300_000)
                return
        try:
            self.client.check_msg()
            for ev in self.meter.log.since(self._events_sent):
                self._publish(self.t_events, b"%d %d %d %d" % ev)
                self._events_sent = ev[0]
            if self.clock.ticks_diff(now, self._next_report) >= 0:
                self.report()
                self._next_report = self.clock.ticks_add(now, self.cfg["report_s"] * 1000)
            if self.clock.ticks_diff(now, self._last_ping) > self.cfg["mqtt"].get("keepalive", 60) * 500:
                self.client.ping()
                self._last_ping = now
        except (OSError, AssertionError, IndexError):
            self._drop()
