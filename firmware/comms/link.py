# MQTT link of the meter (docs/PROTOCOL.md), over comms.net: umqtt.simple
# encodes and decodes, comms.net moves the bytes without ever waiting.
#
#   - step() is one short turn (docs/LINK.md): it polls the
#     connection for at most net.STEP_BUDGET_MS, handles received commands
#     for at most INBOX_BUDGET_MS, and queues acks and one outbox batch;
#     nothing in it waits for the network;
#   - a command is taken off the socket only when the inbox has room, so a
#     burst queued by the broker waits in TCP (flow control), never in RAM,
#     and never breaks the connection;
#   - keepalive pings run on real time (time.ticks_ms), not on the meter's
#     clock, which the simulator may run fast; a broker silent for a whole
#     keepalive plus timeout_ms means a dead link (half-open TCP);
#   - any error drops the connection; reconnects back off exponentially with
#     jitter, and every connection subscribes again;
#   - acks stay queued until the broker has them, and go again after a
#     reconnect; telemetry and events go into the flash outbox first and
#     leave in order, one batch in flight at a time.
# Metering never waits on it: the meter task runs whatever state this link is
# in.
import os
import time

import codes
from comms import codec
from comms.sign import uplink_key
from comms.commands import Commands
from comms.outbox import Outbox
from keystore import load as load_secrets

BACKOFF_MIN_MS = 1000
MAX_INBOX = 8          # commands received and not yet handled; more wait in the socket
INBOX_BUDGET_MS = 30   # per step: the first command always, more while time is left
MAX_ACKS = 24          # acks kept until the broker has them; the oldest goes first
MAX_BACKLOG = 2048     # bytes queued on the connection before acks and batches wait
BATCHES_PER_STEP = 4   # outbox batches per step, one in flight at a time
BATCH_RECORDS = 16
# Forged commands: per window, the first SIG_ALLOWANCE get an ack and an
# event each; the rest are only counted, and one EV_BAD_SIGNATURES event
# closes the window. A window that saw more doubles the next one.
SIG_ALLOWANCE = 3
SIG_WINDOW_MS = 60_000
SIG_WINDOW_MAX_MS = 3_600_000


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2)) if s else None


class MqttLink:
    def __init__(self, cfg, meter, net, clock, client_factory, meter_key=None,
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
        # tags every publish on t, e, a (docs/PROTOCOL.md §3.2); without a
        # key (not provisioned) the tag is the empty key's, which no
        # head-end accepts
        self._up_key = uplink_key(meter_key) if meter_key else None
        mid = cfg["meter_id"]
        self.client_id = mid
        tp = codec.topics(mid, cfg["region"])
        self.t_tele = tp["t"].encode()
        self.t_events = tp["e"].encode()
        self.t_status = tp["s"].encode()
        self.t_cmd = tp["c"].encode()
        self.t_ack = tp["a"].encode()
        self.t_tariff = tp["tariff"].encode()
        self.t_fleet = tp["fleet"].encode()
        self.t_ota = tp["o"].encode()
        self.t_ota_board = None         # r/<r>/ota/<board>, set by listen_ota
        self.t_ota_req = tp["or"].encode()
        self.ota = None                  # ota.Ota when the board has OTA slots (firmware/ota)
        self._ota_done = False           # this step's ota.step ran (on the connected path)
        self.client = None
        self.connected = False           # subscribed: commands can arrive
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = self.rt.ticks_ms()
        self._next_report = 0
        self._last_ping = 0
        self._subs = None                # packet ids of this connection's SUBSCRIBEs
        self._inbox = []
        self._acks = []                  # [payload, packet id or 0 if not sent on this connection]
        self._batch = None               # (packet id, records) of the outbox batch in flight
        self._sig_bad = 0                # bad signatures in the current window
        self._sig_until = None           # ticks_ms the window ends, None: no window open
        self._sig_window = SIG_WINDOW_MS
        # counters, for the simulator display, the bench and the REPL
        self.sent = 0
        self.received = 0
        self.connects = 0
        self.failures = 0
        self.acks_dropped = 0     # acks that found MAX_ACKS queued
        self.oversized = 0        # packets over net.MAX_PACKET, discarded unread
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
        self.commands = Commands(cfg, meter, clock, self.t_cmd, self.t_tariff, self.t_fleet,
                                 meter_key, state_dir, outbox)
        self.commands.on_config = self._config_changed
        self.commands.on_bad_signature = self._bad_signature

    @property
    def cmd_n(self):
        return self.commands.cmd_n

    @property
    def rejected(self):
        """Messages refused: too long, or the command was not carried out."""
        return self.oversized + self.commands.rejected

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
                         getattr(m, "emergency_owed", 0) > 0, self.outbox.summarised > 0,
                         s["sf"])
        rec = codec.tele(s["t"], s["ml"], s["bal"], s["flow"], fl, s["tv"], s["evs"], rssi)
        try:
            n = self.outbox.append(rec)
            if getattr(m, "cell", None) is not None:   # a battery board: the cell with every report
                self.outbox.append(self._batt_record(s["t"]))
            return n
        except OSError:
            return 0

    def _batt_record(self, t):
        c = self.meter.cell
        return codec.batt(t, c.millivolts(), c.level_pct(), c.days_left(t))

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
        c.on_refused = self._too_long
        c.set_last_will(self.t_status, b"0", retain=True, qos=1)
        # A persistent session: commands published while the meter was
        # offline are queued by the broker and delivered after the CONNACK.
        c.open(False)
        self._subs = None
        self._last_ping = now

    def _session(self, c):
        """The broker accepted the connection: subscribe, announce, and send
        again what the last connection left unacknowledged."""
        self._subs = (c.subscribe(self.t_cmd, 1), c.subscribe(self.t_tariff, 1),
                      c.subscribe(self.t_fleet, 1))
        if self.ota is not None:
            self._subs += (c.subscribe(self.t_ota, 1), c.subscribe(self.t_ota_board, 1))
        self._publish(self.t_status, b"1", retain=True)
        for a in self._acks:
            a[1] = 0
        self._batch = None

    def _close(self):
        c = self.client
        self.client = None
        self.connected = False
        if c is not None:
            c.close()

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
        c = self.client
        if c is not None and c.up:
            try:
                self._publish(self.t_status, b"0", retain=True)
                c.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._close()

    def _publish(self, topic, payload, retain=False, qos=1):
        pid = self.client.publish(topic, payload, retain, qos)
        self.sent += 1
        self._show("out", topic, payload)
        return pid

    def _show(self, direction, topic, payload):
        if self.on_traffic:
            try:
                self.on_traffic(direction, topic, codec.describe(topic, payload).encode())
            except Exception:  # noqa: BLE001 - a display must not break the link
                pass

    def _on_message(self, topic, msg):
        # Called by umqtt's decoder inside Conn.poll, which hands over a
        # PUBLISH only while the inbox has room: only queue here, so an ack
        # is never published from inside the decoder.
        self.received += 1
        if len(self._inbox) >= MAX_INBOX:
            raise OSError(105)    # ENOBUFS: the connection broke its promise of room
        self._inbox.append((bytes(topic), bytes(msg)))

    def _too_long(self, kind, length):
        # discarded unread by comms.net (and acknowledged, so the broker does
        # not deliver it again): the head-end learns it from this event
        self.oversized += 1
        self.meter.log.add(codes.EV_MESSAGE_TOO_LONG, length)

    def _process_inbox(self, c=None):
        """Handle received commands for INBOX_BUDGET_MS (the first always);
        with a connection, refill the inbox from it meanwhile, so cheap
        messages (refused forgeries, say) drain faster than 8 per step."""
        rt = self.rt
        t0 = rt.ticks_ms()
        while self._inbox:
            topic, msg = self._inbox.pop(0)
            self._show("in", topic, msg)
            self._handle(topic, msg)
            if rt.ticks_diff(rt.ticks_ms(), t0) >= INBOX_BUDGET_MS:
                break
            if not self._inbox and c is not None and len(self._acks) + MAX_INBOX <= MAX_ACKS:
                self._send_acks(c)   # acks out first: the ack queue must not overflow
                c.poll(MAX_INBOX)

    def _reply(self, payload):
        # sent when the link is up, kept until the broker has it (bounded:
        # the head-end re-sends, and a re-sent top-up answers USED)
        self._acks.append([codec.seal_up(self._up_key, self.t_ack, payload), 0])
        if len(self._acks) > MAX_ACKS:
            self._acks.pop(0)
            self.acks_dropped += 1

    def _send_acks(self, c):
        keep = []
        for a in self._acks:
            if not a[1]:
                if c.backlog() > MAX_BACKLOG:
                    keep.append(a)
                    continue
                a[1] = self._publish(self.t_ack, a[0])
            if a[1] in c.unacked:
                keep.append(a)
        self._acks = keep

    def _drain(self, c):
        for _ in range(BATCHES_PER_STEP):
            if self._batch is not None:
                pid, recs = self._batch
                if pid in c.unacked:
                    return
                self.outbox.ack(recs)
                self._batch = None
            if c.backlog() > MAX_BACKLOG:
                return
            recs = self.outbox.peek(BATCH_RECORDS)
            if not recs:
                return
            topic = self.t_events if codec.channel(recs[0][0]) == "e" else self.t_tele
            body = codec.seal_up(self._up_key, topic, codec.batch(recs))
            self._batch = (self._publish(topic, body), recs)
            c.poll(0)   # out now; on a near broker its PUBACK is back by the next turn

    # ---------------- forged commands ----------------
    def _bad_signature(self):
        """One command failed its MAC: True while the window's allowance of
        acks and events lasts."""
        if self._sig_until is None:
            self._sig_until = self.rt.ticks_add(self.rt.ticks_ms(), self._sig_window)
        self._sig_bad += 1
        return self._sig_bad <= SIG_ALLOWANCE

    def _sig_tick(self, now):
        if self._sig_until is None or self.rt.ticks_diff(now, self._sig_until) < 0:
            return
        if self._sig_bad > SIG_ALLOWANCE:
            self.meter.log.add(codes.EV_BAD_SIGNATURES, self._sig_bad)
            self._sig_window = min(self._sig_window * 2, SIG_WINDOW_MAX_MS)
        else:
            self._sig_window = SIG_WINDOW_MS
        self._sig_bad = 0
        self._sig_until = None

    # ---------------- the step ----------------
    def step(self):
        """One short, bounded turn of the link; called from the comms task."""
        self._ota_done = False
        self._turn()
        if self.ota is not None and not self._ota_done:
            # offline too: a new image's trial waits for the link only
            # TRIAL_WAIT_MS, then fails its link check and rolls back
            self.ota.step(self)

    def _turn(self):
        rt = self.rt
        now = rt.ticks_ms()
        self._report_due()
        self._sig_tick(now)
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
        c = self.client
        try:
            c.poll(MAX_INBOX - len(self._inbox))
            if not c.up:
                return
            if self._subs is None:
                self._session(c)
            if not self.connected and not any(p in c.unacked for p in self._subs):
                self.connected = True
                self.connects += 1
                self.backoff_ms = BACKOFF_MIN_MS
            self._process_inbox(c)
            self._send_acks(c)
            if self.connected:
                self._drain(c)
            if self.ota is not None:
                self._ota_done = True
                self.ota.step(self)
            ka = self.cfg["mqtt"].get("keepalive", 60) * 1000
            if ka:
                tmo = self.transport.timeout_ms if self.transport is not None else 5000
                if rt.ticks_diff(now, c.last_rx) > ka + tmo:
                    raise OSError(codes.TIMEOUT)  # broker silent for a whole keepalive
                if rt.ticks_diff(now, self._last_ping) >= ka // 2:
                    c.ping()
                    self._last_ping = now
            c.poll(MAX_INBOX - len(self._inbox))
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def settled(self):
        """Connected with nothing left to do: the outbox sent, every batch
        and ack with the broker, no command waiting. A battery meter's
        reporting window ends on it (firmware/window.py)."""
        c = self.client
        return (self.connected and c is not None and not self._inbox and not self._acks
                and self._batch is None and not c.unacked and not c.backlog()
                and not self.outbox.count)

    # ---------------- incoming ----------------
    def publish_ota(self, payload):
        """A block request of the OTA path (firmware/ota), when the
        connection has room for it."""
        c = self.client
        if c is not None and c.up and c.backlog() <= MAX_BACKLOG:
            self._publish(self.t_ota_req, payload, qos=0)

    def listen_ota(self, ota, board):
        """The OTA path (firmware/ota) takes this link's manifests and
        pieces: m/<id>/o and its board's retained r/<r>/ota/<board>, never
        another board's (docs/OTA.md §4)."""
        self.ota = ota
        self.t_ota_board = codec.ota_topic(self.cfg["region"], board).encode()

    def _handle(self, topic, msg):
        if self.ota is not None and (topic == self.t_ota or topic == self.t_ota_board):
            self.ota.on_message(msg)
            return
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


def build_link(meter, hw):
    """The link for a meter on a board: keys, credentials and the broker's CA
    from <state_dir>/secrets.json (written at provisioning)."""
    from comms.net import Dialer
    cfg = meter.cfg
    sec = load_secrets(hw.state_dir)
    m = cfg["mqtt"]
    if cfg.get("production") and not m.get("tls"):
        # credentials, commands and acks in clear: a production meter refuses
        # to start its link rather than run it so (docs/SECURITY.md, MQTT)
        raise ValueError("mqtt.tls is required in production")
    tls = None
    cadata = None
    if m.get("tls"):
        tls = getattr(hw.net, "wrap_tls", None) or _no_tls
        cadata = pem_to_der(sec.get("ca"))
    dns = m.get("dns")
    if dns is None and hasattr(hw.net, "dns"):
        dns = hw.net.dns()
    dialer = Dialer(m["host"], m["port"], m.get("timeout_ms", 5000), tls, cadata,
                    m.get("tls_host"), dns)

    def factory(client_id, _host, _port, keepalive, user=None, password=None):
        return dialer.client(client_id, keepalive, user, password)

    return MqttLink(cfg, meter, hw.net, hw.clock, factory, _unhex(sec.get("mk")),
                    sec.get("user"), sec.get("pw"), hw.state_dir, dialer)
