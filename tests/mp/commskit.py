# Test doubles for the MQTT link on the virtual clock: a fake umqtt client
# (same surface as umqtt.simple's MQTTClient), a hand-stepped real-time
# source, and a meter with a link wired to them.
import json

import codes
from comms import codec, sign
from comms.link import MqttLink
from comms.outbox import Outbox
from simkit import make_meter
import officekit

MK = b"meter-key-for-tests-0123456789ab"


class FakeRT:
    """Real time, stepped by hand (the link's keepalive/backoff clock)."""

    def __init__(self):
        self.ms = 1000

    def ticks_ms(self):
        return self.ms

    @staticmethod
    def ticks_diff(a, b):
        return a - b

    @staticmethod
    def ticks_add(a, d):
        return a + d


class Broker:
    """What the fake clients publish to, and what they receive."""

    def __init__(self, rt):
        self.rt = rt
        self.up = True
        self.silent = False     # takes everything, answers nothing (a half-open link)
        self.published = []     # (topic, payload, retain, qos)
        self.pending = []       # (topic, payload) to deliver to the meter
        self.connects = 0
        self.subs = []
        self.pings = 0
        self.fail_publish = 0   # the next n publishes raise OSError
        self.wills = []

    def topics(self, suffix):
        return [p for p in self.published if p[0].endswith(suffix)]


class FakeClient:
    """comms.net.Conn's surface: open/poll/subscribe/publish/ping; packet ids
    are acknowledged at once, unless the broker is silent."""

    def __init__(self, broker, client_id, host, port, keepalive, user, password):
        self.b = broker
        self.cb = None
        self.keepalive = keepalive
        self.user = user
        self.up = False
        self.closed = False
        self.unacked = {}
        self.on_refused = None
        self.last_rx = broker.rt.ms
        self._pid = 0
        self._ping_due = False

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.b.wills.append((topic, msg, retain, qos))

    def open(self, clean_session=True):
        if not self.b.up:
            raise OSError(111)
        self.b.connects += 1
        self.clean = clean_session
        self.up = True
        self.last_rx = self.b.rt.ms

    def _alive(self):
        if not self.b.up or self.closed:
            raise OSError(104)

    def _next_pid(self):
        self._pid += 1
        if self.b.silent:
            self.unacked[self._pid] = 0
        return self._pid

    def subscribe(self, topic, qos=0):
        self._alive()
        self.b.subs.append((topic, qos))
        return self._next_pid()

    def publish(self, topic, msg, retain=False, qos=0):
        self._alive()
        if self.b.fail_publish:
            self.b.fail_publish -= 1
            raise OSError(110)
        self.b.published.append((bytes(topic), bytes(msg), retain, qos))
        return self._next_pid() if qos else 0

    def poll(self, room=8):
        self._alive()
        if self.b.silent:
            return
        if self._ping_due:
            self._ping_due = False
            self.last_rx = self.b.rt.ms
        while room > 0 and self.b.pending:
            t, m = self.b.pending.pop(0)
            self.last_rx = self.b.rt.ms
            self.cb(t, m)
            room -= 1

    def backlog(self):
        return 0

    def ping(self):
        self._alive()
        self.b.pings += 1
        self._ping_due = True

    def disconnect(self):
        self.closed = True

    def close(self):
        self.closed = True


def make_link(state_dir=None, meter_key=MK, outbox=None, **cfg_over):
    cfg_over.setdefault("report_s", 3600)
    cfg_over.setdefault("mqtt", {"host": "x", "port": 1, "tls": False, "keepalive": 60})
    m, hw = make_meter(state_dir, **cfg_over)
    m.attach_office(officekit.keys())   # the test office key (officekit signs with it)
    rt = FakeRT()
    b = Broker(rt)

    def factory(cid, host, port, ka, user=None, pw=None):
        return FakeClient(b, cid, host, port, ka, user, pw)

    link = MqttLink(m.cfg, m, hw.net, hw.clock, factory, meter_key, "u", "p",
                    hw.state_dir, None, rt, outbox)
    return link, m, hw, b, rt


def region_tariff(region=1, **tariff):
    """A region tariff as the head-end publishes it: signed by the office."""
    body = json.dumps(dict(tariff, k="tariff", r=region)).encode()
    return officekit.message(b"tariff", body)


def command(link, n, op, key=MK, **args):
    body = codec.command(n, op, **args)
    return codec.seal(key, link.t_cmd, body)


UK = sign.uplink_key(MK)


def send(link, b, payload, topic=None):
    """Deliver one message to the meter and run the link; returns the acks
    published in that step, parsed, each checked as the head-end checks it:
    its tag under the meter's uplink key, and an ack of this very message
    carries this message's hash (then dropped from the dict)."""
    before = len(b.topics(b"/a"))
    b.pending.append((topic or link.t_cmd, payload))
    link.step()
    out = []
    for t, p, _, _ in b.topics(b"/a")[before:]:
        # the key the link was built with (MK for make_link's default)
        assert codec.verify_up(link._up_key, t, p), "ack tag"
        a = codec.parse_ack(p)
        h = a.pop("h")
        assert len(out) or h == codec.command_hash(payload), "ack of another command"
        out.append(a)
    return out


def records(b):
    """Every uplink record the fake broker received, in order (each batch's
    tag checked)."""
    out = []
    for t, p, _, _ in b.published:
        if t.endswith(b"/t") or t.endswith(b"/e"):
            assert codec.verify_up(UK, t, p), "batch tag"
            out.extend(codec.unbatch(p))
    return out


def events(m, code):
    return [e for e in m.log.recent(64) if e[2] == code]


__all__ = ["json", "codes", "Outbox"]


def recovery(link, n, op, d=officekit.TEST_D, x=None, key=MK, **fields):
    """A sealed "void" or "floor" command as the head-end sends it: the
    office-signed document (signed.py) for this meter, signed with d."""
    x = link.meter.clock.time() + 86400 if x is None else x
    body = json.dumps(dict(fields, k=op, m=[link.meter.cfg["meter_id"]], x=x)).encode()
    return command(link, n, op, key=key, d=officekit.message(op.encode(), body, d).decode())
