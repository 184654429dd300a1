# The MQTT connection under the link: umqtt.simple encodes and decodes the
# packets, this module moves the bytes, and nothing here ever waits.
#
# umqtt.simple (1.3.4, the design card's codec) is written for a blocking
# socket: connect() writes CONNECT and then reads the CONNACK, publish(qos=1)
# reads until its PUBACK, subscribe() until its SUBACK. Here its socket is a
# _Pipe: writes go into an output buffer, and reads are served only from one
# complete packet that this module has already received. When umqtt asks for
# a reply that has not arrived, the pipe raises _Pending: umqtt's call ends
# there, with its packet encoded, and Conn.poll() collects the reply later
# (CONNACK, SUBACK, PUBACK and PINGRESP are matched here; PUBLISH packets
# are handed back to umqtt's wait_msg, which decodes them, calls the link's
# callback and writes the PUBACK).
#
# Conn.poll() advances one connection within STEP_BUDGET_MS of real time:
# DNS (comms.dns, UDP, never the port's blocking getaddrinfo), a
# non-blocking TCP connect, the TLS handshake (the board's wrap_tls with
# do_handshake_on_connect=False: each write() runs the handshake one
# non-blocking step further, as the port's tls module allows), then the
# packets in and out. Every wait has a deadline (timeout_ms): the connect as
# a whole, each SUBACK and PUBACK, and output the peer does not take.
# A packet longer than MAX_PACKET is never read into RAM: its length comes
# first in the fixed header, so its body is read and discarded in small
# chunks, and a QoS 1 PUBLISH is then acknowledged (so the broker does not
# deliver it again) and reported through on_refused. docs/LINK.md.
import errno
import io
import select
import socket
import time

from micropython import const

MAX_PACKET = const(4096)      # bytes, fixed header included; the broker's max_packet_size
STEP_BUDGET_MS = const(20)    # real time one poll() may use
_CHUNK = const(512)           # bytes per socket call
_PREFIX = const(68)           # of an oversized PUBLISH: topic length, topic, packet id
_COMPACT = const(2048)        # sent bytes kept before the output buffer is compacted

_CONNECTING = const(0)
_OPEN = const(1)



class _Pending(Exception):
    """umqtt asked to read a reply that has not arrived yet."""


class _Pipe:
    """umqtt.simple's socket: an output buffer and the packet being decoded."""

    def __init__(self):
        self.out = bytearray()
        self.inp = b""
        self.pos = 0

    def write(self, data, length=None):
        mv = memoryview(data)
        if length is not None:
            mv = mv[:length]
        self.out.extend(mv)
        return len(mv)

    def read(self, n):
        if self.pos + n > len(self.inp):
            raise _Pending()
        d = self.inp[self.pos:self.pos + n]
        self.pos += n
        return d

    def setblocking(self, _flag):
        pass

    def connect(self, _addr):
        pass

    def close(self):
        pass


class _RecordGate(io.IOBase):
    """Between the raw socket and mbedTLS while the handshake runs: hands
    over one TLS record, then says "would block" once. mbedTLS runs its
    handshake as far as the data it has allows, so without this one write()
    would check the certificate chain, check the ServerKeyExchange signature
    and compute the key exchange in one go (the server sends its flight in
    one segment); with it, each record is one call (docs/LINK.md §5)."""

    def __init__(self, sock):
        self._s = sock
        self.gating = True
        self._hdr = bytearray(5)   # record header: type, version, length
        self._hgot = 0             # header bytes read from the socket
        self._hout = 0             # header bytes handed to mbedTLS
        self._left = 0             # body bytes of the record still to hand over
        self._pause = False
        self.records = 0           # records handed over (progress, for Conn.poll)

    def readinto(self, buf):
        if self._pause:
            self._pause = False
            return None
        try:
            if self._hgot < 5:
                n = self._s.readinto(memoryview(self._hdr)[self._hgot:])
                if not n:
                    return n       # None: would block; 0: closed
                self._hgot += n
                if self._hgot < 5:
                    return None
                self._left = self._hdr[3] << 8 | self._hdr[4]
            if self._hout < 5:
                k = min(len(buf), 5 - self._hout)
                buf[:k] = self._hdr[self._hout:self._hout + k]
                self._hout += k
                if self._hout == 5 and not self._left:
                    self._end()
                return k
            n = self._s.readinto(memoryview(buf)[:min(len(buf), self._left)])
        except OSError:
            return 0               # an exception must not unwind through mbedTLS: "closed"
        if not n:
            return n
        self._left -= n
        if not self._left:
            self._end()
        return n

    def _end(self):
        self._hgot = self._hout = 0
        self._pause = self.gating
        self.records += 1

    def write(self, buf):
        try:
            return self._s.write(buf)
        except OSError:
            return 0

    def ioctl(self, req, arg):
        if req == 4:               # MP_STREAM_CLOSE
            self._s.close()
        return 0


class _Module:
    """Stands in for the `socket` module inside umqtt.simple's connect()."""

    def __init__(self, pipe):
        self._pipe = pipe

    def socket(self, *_args):
        return self._pipe

    @staticmethod
    def getaddrinfo(*_args):
        return [(0, 0, 0, "", None)]   # the address is Conn's business


def is_literal(host):
    """True when host is a dotted IPv4 address (no DNS needed)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


class Dialer:
    """What stays across connections: where the broker is, TLS, the DNS
    cache, and byte counts for the REPL and the bench."""

    def __init__(self, host, port, timeout_ms=5000, tls=None, cadata=None, tls_host=None,
                 dns_server=None, rt=None):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self.tls = tls              # fn(raw_sock, server_hostname, cadata) -> TLS stream, or None
        self.cadata = cadata        # DER CA certificate the broker's certificate must chain to
        self.tls_host = tls_host or host
        self.dns_server = dns_server  # "a.b.c.d" or "a.b.c.d:port"; None: a literal host only
        self.rt = rt or time
        self.addr = host if is_literal(host) else None
        self.addr_until = 0         # ticks_ms the cached DNS answer is good until
        self.tx = 0
        self.rx = 0

    def client(self, client_id, keepalive, user=None, password=None):
        return Conn(self, client_id, keepalive, user, password)


class Conn:
    """One MQTT connection (the link makes a new one for every attempt)."""

    def __init__(self, dialer, client_id, keepalive, user, password):
        import umqtt.simple as simple
        self._d = dialer
        self._simple = simple
        self._pipe = _Pipe()
        self._shim = _Module(self._pipe)
        self._mq = simple.MQTTClient(client_id, dialer.host, dialer.port, user=user,
                                     password=password, keepalive=keepalive)
        self.rt = dialer.rt
        self.up = False              # CONNACK accepted
        self.unacked = {}            # packet id -> deadline (ticks_ms) of its PUBACK/SUBACK
        self.on_refused = None       # fn(packet type, length) for an oversized packet
        self.last_rx = self.rt.ticks_ms()
        self._state = _CONNECTING
        self._lookup = None
        self._raw = None
        self._gate = None
        self._s = None
        self._poller = None
        self._opos = 0               # bytes of _pipe.out already sent
        self._wlen = 0               # length of a write the socket has not taken yet
        self._out_since = 0          # ticks_ms output has waited since
        self._hdr = bytearray(5)     # fixed header being read
        self._hn = 0
        self._body = None            # bytearray of the packet body, or None
        self._got = 0
        self._skip = 0               # bytes of an oversized packet still to discard
        self._big = 0                # its length
        self._prefix = None
        self._scratch = None
        self._deadline = 0

    # ---- what the link calls; none of these waits ----
    def set_callback(self, f):
        self._mq.set_callback(f)

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self._mq.set_last_will(topic, msg, retain, qos)

    def open(self, clean_session=True):
        """Start connecting; poll() does the rest within timeout_ms."""
        self._deadline = self.rt.ticks_add(self.rt.ticks_ms(), self._d.timeout_ms)
        self._call(self._mq.connect, clean_session)

    def subscribe(self, topic, qos=0):
        return self._track(self._call(self._mq.subscribe, topic, qos))

    def publish(self, topic, msg, retain=False, qos=0):
        """Queue one PUBLISH; returns its packet id (0 for QoS 0): it is
        acknowledged when the id has left `unacked`."""
        pid = self._call(self._mq.publish, topic, msg, retain, qos)
        return self._track(pid) if qos else 0

    def ping(self):
        self._mq.ping()

    def backlog(self):
        """Bytes queued and not yet taken by the socket."""
        return len(self._pipe.out) - self._opos

    def disconnect(self):
        self._mq.disconnect()     # DISCONNECT into the buffer, one try to send it
        try:
            self._send()
        except OSError:
            pass
        self.close()

    def close(self):
        for s in (self._s, self._raw):
            if s is not None:
                try:
                    s.close()
                except Exception:  # noqa: BLE001 - closing a broken socket
                    pass
        if self._lookup is not None:
            self._lookup.close()
        self._s = self._raw = self._lookup = None

    def _call(self, fn, *args):
        mq = self._mq
        if mq.pid >= 0xFFFF:
            mq.pid = 0            # packet ids are 1..65535; umqtt would pack 65536 as 0
        setattr(self._simple, "socket", self._shim)
        try:
            fn(*args)
        except _Pending:
            pass                  # the packet is encoded; its reply is poll()'s business
        return mq.pid

    def _track(self, pid):
        self.unacked[pid] = self.rt.ticks_add(self.rt.ticks_ms(), self._d.timeout_ms)
        return pid

    # ---- progress ----
    def poll(self, room=8):
        """Advance this connection for at most STEP_BUDGET_MS; hand at most
        `room` PUBLISH packets to the callback. Raises OSError when the
        connection is dead or a deadline passed."""
        rt = self.rt
        t0 = rt.ticks_ms()
        while True:
            if self._state == _CONNECTING:
                moved = self._connecting()
            else:
                g = self._gate
                before = g.records if g is not None else 0
                moved = self._send()
                got, room = self._recv(room)
                # a record the gate handed over is progress, though mbedTLS
                # then said "would block": the next call goes on at once
                moved = moved or got or (g is not None and g.records != before)
            if not moved or rt.ticks_diff(rt.ticks_ms(), t0) >= STEP_BUDGET_MS:
                break
        self._check_deadlines()

    def _check_deadlines(self):
        rt = self.rt
        now = rt.ticks_ms()
        if not self.up and rt.ticks_diff(now, self._deadline) > 0:
            raise OSError(errno.ETIMEDOUT)
        # an overdue PUBACK/SUBACK may wait in the stream behind a backlog
        # the broker is still pushing (a session's queue after an outage):
        # a broker that is sending is alive, so only silence makes it late
        quiet = rt.ticks_diff(now, self.last_rx) > self._d.timeout_ms
        for dl in self.unacked.values():
            if quiet and rt.ticks_diff(now, dl) > 0:
                raise OSError(errno.ETIMEDOUT)
        if self.backlog() and rt.ticks_diff(now, self._out_since) > self._d.timeout_ms:
            raise OSError(errno.ETIMEDOUT)   # the peer takes nothing

    def _resolve(self):
        """The broker's address: a literal, the cached DNS answer, or a
        lookup in progress (False while it waits)."""
        d = self._d
        rt = self.rt
        if is_literal(d.host):
            d.addr = d.host
            return True
        if d.addr is not None and rt.ticks_diff(rt.ticks_ms(), d.addr_until) < 0:
            return True
        if not d.dns_server:
            raise OSError(errno.EINVAL)   # a host name and no DNS server to ask
        if self._lookup is None:
            from comms.dns import Lookup
            self._lookup = Lookup(d.host, d.dns_server, d.timeout_ms, rt)
        try:
            ip, ttl_s = self._lookup.poll()
        except OSError:
            if d.addr is None:
                raise
            ip, ttl_s = d.addr, 60    # DNS down: the last answer beats none
        if ip is None:
            return False
        self._lookup.close()
        self._lookup = None
        d.addr = ip
        d.addr_until = rt.ticks_add(rt.ticks_ms(), min(ttl_s, 3600) * 1000)
        return True

    def _connecting(self):
        d = self._d
        if self._raw is None:
            if not self._resolve():
                return False
            s = socket.socket()
            self._raw = s
            s.setblocking(False)
            try:
                s.connect(socket.getaddrinfo(d.addr, d.port)[0][-1])   # a literal: no lookup
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    raise
            self._poller = select.poll()
            self._poller.register(s, select.POLLOUT)
            return True
        ev = self._poller.poll(0)
        if not ev:
            return False
        flags = ev[0][1]
        if flags & (select.POLLERR | select.POLLHUP):
            raise OSError(errno.ECONNREFUSED)
        if not flags & select.POLLOUT:
            return False
        try:
            # umqtt writes a packet in pieces, and Nagle would hold each QoS 1
            # publish ~40 ms (IPPROTO_TCP 6, TCP_NODELAY 1 on Linux and lwIP)
            self._raw.setsockopt(6, 1, 1)
        except (OSError, AttributeError, TypeError):
            pass
        if d.tls is not None:
            self._gate = _RecordGate(self._raw)
            self._s = d.tls(self._gate, d.tls_host, d.cadata)
        else:
            self._s = self._raw
        self._poller = None
        self._state = _OPEN
        self._out_since = self.rt.ticks_ms()
        return True

    def _send(self):
        out = self._pipe.out
        left = len(out) - self._opos
        if not left:
            return False
        if not self._wlen:
            # the same length again after a refused write: mbedTLS wants the
            # same arguments until it has taken a record
            self._wlen = min(left, _CHUNK)
        n = self._s.write(memoryview(out)[self._opos:self._opos + self._wlen])
        if not n:
            return False          # would block (or the TLS handshake is not done yet)
        self._wlen = 0
        self._opos += n
        self._d.tx += n
        self._out_since = self.rt.ticks_ms()
        if self._opos == len(out):
            self._pipe.out = bytearray()
            self._opos = 0
        elif self._opos > _COMPACT:
            self._pipe.out = out[self._opos:]
            self._opos = 0
        return True

    def _read_into(self, mv):
        n = self._s.readinto(mv)
        if n is None:
            return 0
        if n == 0:
            raise OSError(errno.ECONNRESET)   # closed by the peer
        self._d.rx += n
        now = self.rt.ticks_ms()
        self.last_rx = now
        return n

    def _recv(self, room):
        """Read at most one packet's worth; (made progress, room left)."""
        if self._skip:
            return self._discard(), room
        if self._body is None:
            h = self._hdr
            while self._hn < 2 or h[self._hn - 1] & 0x80:
                if self._hn == 5:
                    raise OSError(errno.EIO)   # a remaining length of more than 4 bytes
                if not self._read_into(memoryview(h)[self._hn:self._hn + 1]):
                    return False, room
                self._hn += 1
            n = 0
            for i in range(self._hn - 1, 0, -1):
                n = (n << 7) | (h[i] & 0x7F)
            if n + self._hn > MAX_PACKET:
                self._skip = self._big = n
                self._prefix = bytearray()
                return True, room
            if h[0] & 0xF0 == 0x30 and room <= 0:
                return False, room   # no room: the rest waits in the socket (TCP flow control)
            self._body = bytearray(n)
            self._got = 0
        body = self._body
        while self._got < len(body):
            k = self._read_into(memoryview(body)[self._got:self._got + _CHUNK])
            if not k:
                return True, room
            self._got += k
        kind = self._hdr[0]
        pkt = bytes(self._hdr[:self._hn]) + body
        self._hn = 0
        self._body = None
        if self._packet(kind, body, pkt):
            room -= 1
        return True, room

    def _packet(self, kind, body, pkt):
        """Handle one complete packet; True when it was a PUBLISH."""
        t = kind & 0xF0
        if t == 0x30:
            if kind & 6 == 4:
                raise OSError(errno.EIO)   # QoS 2: never subscribed to
            p = self._pipe
            p.inp = pkt
            p.pos = 0
            self._mq.wait_msg()    # decodes, calls back, writes the PUBACK
            p.inp = b""
            return True
        if t == 0x20:              # CONNACK: flags, return code
            if len(body) != 2:
                raise OSError(errno.EIO)
            if body[1]:
                raise OSError(-body[1])   # refused: 4 bad credentials, 5 not authorised
            self.up = True
            if self._gate is not None:
                self._gate.gating = False   # handshake over: records flow freely
        elif t == 0x40 or t == 0x90:   # PUBACK, SUBACK: packet id (SUBACK: + granted QoS)
            if len(body) < 2:
                raise OSError(errno.EIO)
            if t == 0x90 and (len(body) < 3 or body[2] == 0x80):
                raise OSError(errno.EACCES)   # subscription refused
            self.unacked.pop(body[0] << 8 | body[1], None)
        elif t != 0xD0:            # PINGRESP only moves last_rx
            raise OSError(errno.EIO)
        return False

    def _discard(self):
        """Read and drop part of an oversized packet; PUBACK it at the end."""
        if self._scratch is None:
            self._scratch = bytearray(_CHUNK)
        moved = False
        while self._skip:
            k = self._read_into(memoryview(self._scratch)[:min(self._skip, _CHUNK)])
            if not k:
                return moved
            moved = True
            pre = self._prefix
            if len(pre) < _PREFIX:
                pre.extend(memoryview(self._scratch)[:min(k, _PREFIX - len(pre))])
            self._skip -= k
        kind = self._hdr[0]
        self._hn = 0
        pre = self._prefix
        self._prefix = None
        if kind & 0xF0 == 0x30 and kind & 6 == 2:
            tl = pre[0] << 8 | pre[1] if len(pre) >= 2 else _PREFIX
            if tl + 4 > len(pre):
                raise OSError(errno.ENOBUFS)   # no packet id in reach: drop the link
            self._pipe.write(b"\x40\x02" + bytes(pre[tl + 2:tl + 4]))
        if self.on_refused is not None:
            self.on_refused(kind, self._big)
        return True
