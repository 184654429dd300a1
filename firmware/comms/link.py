# MQTT link of the meter, on micropython-lib's umqtt.simple (docs/PROTOCOL.md).
#
# umqtt.simple blocks, so this link keeps every call short and bounded:
#   - the client runs on comms.net.Transport: connect, TLS and every read and
#     write have a deadline, so no call waits longer than timeout_ms;
#   - incoming messages are only queued by the umqtt callback and handled
#     afterwards, so an ack published from a handler can never nest inside
#     umqtt's wait for another PUBACK;
#   - keepalive pings run on real time (time.ticks_ms), not on the meter's
#     clock, which the simulator may run fast; a broker silent for a whole
#     keepalive means a dead link;
#   - any error drops the connection; reconnects back off exponentially with
#     jitter, and every connect subscribes again;
#   - telemetry and events go into the flash outbox first and leave in order,
#     a few records per QoS 1 publish, whenever the link is up.
# Metering never waits on it: the meter task runs whatever state this link is
# in, and each step() does a bounded amount of work.
import os
import time

import codes
from comms import codec
from comms.commands import Commands
from comms.outbox import Outbox
from keystore import load as load_secrets

BACKOFF_MIN_MS = 1000
MAX_INBOX = 8          # messages queued per step; more wait in the socket
MAX_IN_PER_STEP = 8
BATCHES_PER_STEP = 16   # at most, and for at most DRAIN_MS of real time
DRAIN_MS = 100
BATCH_RECORDS = 16


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2)) if s else None


class MqttLink:
    def __init__(self, cfg, meter, net, clock, client_factory, region_key=None, meter_key=None,
                 user=None, password=None, state_dir=None, transport=None, rt=None,
                 outbox=None):
        self.cfg = cfg
        self.meter = meter
        self.net = net
        self.clock = clock               # the meter's clock: timestamps, report interval
        self.rt = rt or time             # real time: keepalive, backoff, deadlines
        self._factory = client_factory
        self.user = user
        self.password = password
        self.transport = transport
        self.state_dir = state_dir
        mid = cfg["meter_id"]
        self.client_id = mid
        tp = codec.topics(mid, cfg["region"])
        self.t_tele = tp["t"].encode()
        self.t_events = tp["e"].encode()
        self.t_status = tp["s"].encode()
        self.t_cmd = tp["c"].encode()
        self.t_ack = tp["a"].encode()
        self.t_tariff = tp["tariff"].encode()
        self.client = None
        self.connected = False
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = self.rt.ticks_ms()
        self._next_report = 0
        self._last_ping = 0
        self._inbox = []
        self._replies = []        # acks waiting for a connection
        # counters, for the simulator display, the bench and the REPL
        self.sent = 0
        self.received = 0
        self.connects = 0
        self.failures = 0
        self.refused = 0          # messages that found the inbox full
        self.last_error = None
        self.on_traffic = None   # fn(direction, topic, text bytes) for the simulator display
        if outbox is None:
            outbox = Outbox(state_dir or ".", on_overflow=self._overflow)
        else:
            outbox.on_overflow = self._overflow
        self.outbox = outbox
        log = meter.log
        if log.seq < outbox.ev_seen:
            outbox.ev_seen = 0   # a new event log (state wiped): take it from the start
        for ev in log.since(outbox.ev_seen):
            self._on_event(ev)
        log.listeners.append(self._on_event)
        self.commands = Commands(cfg, meter, clock, self.t_cmd, self.t_tariff, region_key,
                                 meter_key, state_dir, outbox)
        self.commands.on_config = self._config_changed

    @property
    def cmd_n(self):
        return self.commands.cmd_n

    @property
    def rejected(self):
        """Messages refused: the inbox was full, or the command was not carried out."""
        return self.refused + self.commands.rejected

    # ---------------- outbox feeding (runs inside the meter task) ----------------
    def _on_event(self, ev):
        try:
            if ev[0] > self.outbox.ev_seen:
                self.outbox.append(codec.event(ev[0], ev[1], ev[2], ev[3]))
        except Exception:  # noqa: BLE001 - a full or failing flash must not stop metering
            pass

    def _overflow(self, n):
        self.meter.log.add(codes.EV_OUTBOX_OVERFLOW, n)

    def telemetry(self):
        """Append one telemetry record to the outbox (sent when the link is up)."""
        m = self.meter
        s = m.snapshot()
        rssi = None
        try:
            rssi = self.net.rssi() if self.net is not None else None
        except Exception:  # noqa: BLE001
            pass
        fl = codec.flags(s["valve"], s["why"], s["low"], getattr(m, "awaiting_confirm", False),
                         getattr(m, "staged", None) is not None,
                         getattr(m, "emergency_owed", 0) > 0, self.outbox.summarised > 0)
        rec = codec.tele(s["t"], s["ml"], s["bal"], s["flow"], fl, s["tv"], s["evs"], rssi)
        try:
            return self.outbox.append(rec)
        except OSError:
            return 0

    def _report_due(self):
        t = self.clock.time()
        if self._next_report - t > self.cfg["report_s"]:
            self._next_report = t   # the clock was set back: report now, not in a day
        if t >= self._next_report:
            self._next_report = t + self.cfg["report_s"]
            self.telemetry()

    # ---------------- connection ----------------
    def _connect(self, now):
        if self.net is not None and not self.net.connect():
            raise OSError(-2)  # no network yet
        m = self.cfg["mqtt"]
        c = self._factory(self.client_id, m["host"], m["port"], m.get("keepalive", 60),
                          self.user, self.password)
        self.client = c
        c.set_callback(self._on_message)
        c.set_last_will(self.t_status, b"0", retain=True, qos=1)
        # A persistent session: commands published while the meter was
        # offline are queued by the broker and delivered now.
        c.connect(False)
        c.subscribe(self.t_cmd, 1)
        c.subscribe(self.t_tariff, 1)
        self.connected = True
        self._publish(self.t_status, b"1", retain=True)
        self.backoff_ms = BACKOFF_MIN_MS
        self.connects += 1
        self._last_ping = now

    def _close(self):
        c = self.client
        self.client = None
        self.connected = False
        if c is not None and c.sock is not None:
            try:
                c.sock.close()
            except Exception:  # noqa: BLE001
                pass

    def _fail(self, e):
        self._close()
        self.failures += 1
        self.last_error = repr(e)
        b = self.backoff_ms
        jitter = int.from_bytes(os.urandom(2), "big") % (b // 2 + 1)
        self._next_try = self.rt.ticks_add(self.rt.ticks_ms(), b // 2 + jitter)
        mx = self.cfg["mqtt"].get("backoff_max_s", 300) * 1000
        self.backoff_ms = min(b * 2, mx)

    def disconnect(self):
        """Clean shutdown (the Last Will is not sent: status goes to "0" here)."""
        if self.client is not None:
            try:
                self._publish(self.t_status, b"0", retain=True)
                self.client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._close()

    def _publish(self, topic, payload, retain=False, qos=1):
        self.client.publish(topic, payload, retain, qos)
        self.sent += 1
        self._show("out", topic, payload)

    def _show(self, direction, topic, payload):
        if self.on_traffic:
            try:
                self.on_traffic(direction, topic, codec.describe(topic, payload).encode())
            except Exception:  # noqa: BLE001 - a display must not break the link
                pass

    def _on_message(self, topic, msg):
        # Called by umqtt from inside check_msg/publish/subscribe: only queue.
        # umqtt sends the PUBACK after this returns, so a message that finds
        # no room must raise here: unacknowledged, the broker keeps it and
        # delivers it again after the reconnect (a dropped one would be a
        # top-up acknowledged to the broker and never applied).
        self.received += 1
        if len(self._inbox) >= MAX_INBOX:
            self.refused += 1
            raise OSError(105)    # ENOBUFS
        self._inbox.append((bytes(topic), bytes(msg)))

    def _process_inbox(self):
        while self._inbox:
            topic, msg = self._inbox.pop(0)
            self._show("in", topic, msg)
            self._handle(topic, msg)

    def _reply(self, payload):
        # acks of commands handled while the link is down wait for the next
        # connection (bounded: the head-end re-sends, and a re-sent top-up
        # answers USED)
        if self.client is None:
            if len(self._replies) < MAX_INBOX:
                self._replies.append(payload)
            return
        self._publish(self.t_ack, payload)

    # ---------------- the step ----------------
    def step(self):
        """One short, bounded turn of the link; called from the comms task."""
        rt = self.rt
        now = rt.ticks_ms()
        self._report_due()
        if self.client is None:
            # commands that were received (and acknowledged to the broker)
            # before the link dropped are carried out now, not lost
            if self._inbox:
                try:
                    self._process_inbox()
                except Exception as e:  # noqa: BLE001
                    self.last_error = repr(e)
            if rt.ticks_diff(now, self._next_try) < 0:
                return
            try:
                self._connect(now)
            except Exception as e:  # noqa: BLE001 - OSError, MQTTException, AssertionError ...
                self._fail(e)
                return
        try:
            tr = self.transport
            for _ in range(MAX_IN_PER_STEP):
                before = tr.rx if tr is not None else 0
                self.client.check_msg()
                if tr is None or tr.rx == before:
                    break
            while self._replies:
                self._publish(self.t_ack, self._replies[0])
                self._replies.pop(0)
            self._process_inbox()
            t0 = rt.ticks_ms()
            for _ in range(BATCHES_PER_STEP):
                if not self._drain_one() or rt.ticks_diff(rt.ticks_ms(), t0) > DRAIN_MS:
                    break
            ka = self.cfg["mqtt"].get("keepalive", 60) * 1000
            if ka:
                if tr is not None and rt.ticks_diff(now, tr.last_rx) > ka + tr.timeout_ms:
                    raise OSError(codes.TIMEOUT)  # broker silent for a whole keepalive
                if rt.ticks_diff(now, self._last_ping) >= ka // 2:
                    self.client.ping()
                    self._last_ping = now
            if tr is not None:
                tr.flush()
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _drain_one(self):
        recs = self.outbox.peek(BATCH_RECORDS)
        if not recs:
            return False
        topic = self.t_events if codec.channel(recs[0][0]) == "e" else self.t_tele
        self._publish(topic, codec.batch(recs))   # QoS 1: returns after PUBACK
        self.outbox.ack(recs)
        return True

    # ---------------- incoming ----------------
    def _handle(self, topic, msg):
        reply = self.commands.handle(topic, msg)
        if reply is not None:
            self._reply(reply)

    def _config_changed(self, key, value):
        if key == "report_s":
            self._next_report = min(self._next_report, self.clock.time() + value)


def pem_to_der(pem):
    """The first certificate of a PEM text as DER (mbedTLS in MicroPython
    takes DER for cadata)."""
    if not pem:
        return None
    from binascii import a2b_base64
    lines = pem.strip().split("\n")
    body = []
    inside = False
    for ln in lines:
        ln = ln.strip()
        if ln.startswith("-----BEGIN"):
            inside = True
        elif ln.startswith("-----END"):
            break
        elif inside:
            body.append(ln)
    return a2b_base64("".join(body))


def _no_tls(sock, host, cadata):
    raise OSError(-3)  # TLS configured but this board's network has no TLS


def build_link(meter, hw, region_key=None):
    """The link for a meter on a board: keys, credentials and the broker's CA
    from <state_dir>/secrets.json (written at provisioning)."""
    from comms.net import Transport, umqtt_factory
    cfg = meter.cfg
    sec = load_secrets(hw.state_dir)
    m = cfg["mqtt"]
    tls = None
    cadata = None
    if m.get("tls"):
        tls = getattr(hw.net, "wrap_tls", None) or _no_tls
        cadata = pem_to_der(sec.get("ca"))
    tr = Transport(m.get("tls_host", m["host"]), m.get("timeout_ms", 5000), tls, cadata)
    if region_key is None:
        region_key = _unhex(sec.get("rk"))
    return MqttLink(cfg, meter, hw.net, hw.clock, umqtt_factory(tr), region_key,
                    _unhex(sec.get("mk")), sec.get("user"), sec.get("pw"), hw.state_dir, tr)
