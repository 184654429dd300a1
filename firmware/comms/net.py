# Transport under umqtt.simple: sockets with deadlines, TLS, byte counts.
#
# umqtt.simple (1.3.4 from PyPI and micropython-lib 1.8 alike) creates its
# socket with `socket.socket()` inside connect(), wraps it with ussl/ssl
# itself, and calls setblocking(True) in wait_msg, after which a read could
# wait for ever. So the client is handed a stand-in `socket` module whose
# sockets
#   - connect with a timeout and do TLS themselves (through the board's
#     net.wrap_tls(sock, server_hostname, cadata), so umqtt never imports
#     ussl or ssl and the same code runs on both versions);
#   - run non-blocking underneath, and turn "blocking" into "wait at most
#     timeout_ms for the rest", raising OSError(ETIMEDOUT) after that;
#   - gather umqtt's small writes (it sends one packet in up to five
#     pieces) and send them as one when it next reads, or on flush(): one
#     TLS record and one TCP segment per MQTT packet instead of five;
#   - count bytes in and out and note when the broker last sent anything.
import select
import socket
import time

ETIMEDOUT = 110


class TimedSocket:
    def __init__(self, transport):
        self._t = transport
        self._raw = socket.socket()
        self._s = self._raw
        self._nb = False
        self._poll = None
        self._out = bytearray()

    # -- what umqtt calls --
    def connect(self, addr):
        t = self._t
        self._raw.settimeout(t.timeout_ms // 1000 or 1)
        self._raw.connect(addr)
        try:
            # umqtt writes a packet in several small pieces: without
            # TCP_NODELAY, Nagle and the peer's delayed ACK hold each QoS 1
            # publish for ~40 ms (IPPROTO_TCP 6, TCP_NODELAY 1 on Linux and lwIP)
            self._raw.setsockopt(6, 1, 1)
        except (OSError, AttributeError, TypeError):
            pass
        if t.tls is not None:
            self._s = t.tls(self._raw, t.host, t.cadata)
        self._raw.setblocking(False)
        if self._s is not self._raw:
            self._s.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._s, select.POLLIN)

    def settimeout(self, _t):
        pass  # the transport's own timeout applies

    def setblocking(self, flag):
        self._nb = not flag

    def _wait(self, deadline, ev):
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            raise OSError(ETIMEDOUT)
        self._poll.modify(self._s, ev)
        self._poll.poll(min(left, 100))

    def read(self, n):
        if self._out:
            self.flush()
        if self._nb:
            d = self._s.read(n)
            if d is None:
                return None
            if not d:
                return b""
            self._got(len(d))
            if len(d) == n:
                return d
            buf = bytearray(d)
        else:
            buf = bytearray()
        deadline = time.ticks_add(time.ticks_ms(), self._t.timeout_ms)
        while len(buf) < n:
            d = self._s.read(n - len(buf))
            if d is None:
                self._wait(deadline, select.POLLIN)
                continue
            if not d:
                if buf:
                    raise OSError(ETIMEDOUT)
                return b""  # closed by the peer: umqtt raises OSError(-1)
            self._got(len(d))
            buf.extend(d)
        return bytes(buf)

    def recv(self, n):
        return self.read(n)

    def write(self, data, length=None):
        mv = memoryview(data)
        if length is not None:
            mv = mv[:length]
        self._out.extend(mv)
        if len(self._out) > 1024:
            self.flush()
        return len(mv)

    def flush(self):
        out = self._out
        if not out:
            return
        self._out = bytearray()
        mv = memoryview(out)
        deadline = time.ticks_add(time.ticks_ms(), self._t.timeout_ms)
        done = 0
        while done < len(mv):
            w = self._s.write(mv[done:])
            if not w:
                self._wait(deadline, select.POLLOUT)
                continue
            done += w
        self._t.tx += done

    def send(self, data):
        return self.write(data)

    def close(self):
        if self._out:
            try:
                self._s.write(self._out)  # a DISCONNECT, say: one try, no waiting
            except OSError:
                pass
            self._out = bytearray()
        try:
            self._s.close()
        except Exception:  # noqa: BLE001 - closing a broken socket
            pass
        if self._s is not self._raw:
            try:
                self._raw.close()
            except Exception:  # noqa: BLE001
                pass

    def _got(self, n):
        self._t.rx += n
        self._t.last_rx = time.ticks_ms()


class Transport:
    """Stands in for the `socket` module inside umqtt.simple."""

    def __init__(self, host, timeout_ms=5000, tls=None, cadata=None):
        self.host = host
        self.timeout_ms = timeout_ms
        self.tls = tls          # fn(raw_sock, server_hostname, cadata) -> stream, or None
        self.cadata = cadata    # the CA certificate(s) that sign the broker's certificate
        self.tx = 0
        self.rx = 0
        self.last_rx = time.ticks_ms()
        self.sock = None

    def socket(self, *_args):
        self.sock = TimedSocket(self)
        return self.sock

    def flush(self):
        """Send what umqtt has written (a PINGREQ, say) now."""
        if self.sock is not None:
            self.sock.flush()

    @staticmethod
    def getaddrinfo(host, port, *args):
        return socket.getaddrinfo(host, port, *args)


def umqtt_factory(transport):
    """A client factory for comms.link: umqtt.simple on this transport."""

    def make(client_id, host, port, keepalive, user=None, password=None):
        import umqtt.simple as simple
        # its connect() calls socket.socket() and socket.getaddrinfo()
        setattr(simple, "socket", transport)
        return simple.MQTTClient(client_id, host, port, user=user, password=password,
                                 keepalive=keepalive)

    return make
