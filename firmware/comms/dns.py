# A DNS lookup that never blocks: one A-record query over UDP (RFC 1035),
# polled by comms.net until its deadline. The ports' socket.getaddrinfo
# blocks the caller until lwIP's resolver gives up (seconds on an ESP32),
# so the link asks the DNS server itself. Only imported for a broker given
# by name; a literal address needs none of this.
import errno
import os
import socket
import struct

from micropython import const

_RESEND_MS = const(1000)   # a lost UDP datagram is asked again after this


def _query(qid, name):
    q = bytearray(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0))   # recursion desired
    for label in name.split("."):
        if not label or len(label) > 63:
            raise OSError(errno.EINVAL)
        q.append(len(label))
        q.extend(label.encode())
    q.extend(b"\x00\x00\x01\x00\x01")    # root, type A, class IN
    return q


def _skip_name(msg, i):
    while True:
        n = msg[i]
        if n & 0xC0 == 0xC0:
            return i + 2                  # compression pointer ends the name
        if n == 0:
            return i + 1
        i += n + 1


def parse(msg, qid):
    """(address, ttl s) from a reply, None when it is not ours; OSError
    when the name has no A record."""
    if len(msg) < 12:
        return None
    rid, flags, qd, an = struct.unpack_from("!HHHH", msg, 0)
    if rid != qid or not flags & 0x8000:
        return None
    if flags & 0x000F:
        raise OSError(errno.ENOENT)       # NXDOMAIN, SERVFAIL ...
    i = 12
    for _ in range(qd):
        i = _skip_name(msg, i) + 4
    for _ in range(an):
        i = _skip_name(msg, i)
        typ, cls, ttl, rdlen = struct.unpack_from("!HHIH", msg, i)
        i += 10
        if typ == 1 and cls == 1 and rdlen == 4:
            return "%d.%d.%d.%d" % tuple(msg[i:i + 4]), ttl
        i += rdlen
    raise OSError(errno.ENOENT)


class Lookup:
    def __init__(self, name, server, timeout_ms, rt):
        host, _, port = server.partition(":")
        self._to = socket.getaddrinfo(host, int(port or 53))[0][-1]   # a literal: no lookup
        self._id = int.from_bytes(os.urandom(2), "big")
        self._q = _query(self._id, name)
        self._rt = rt
        now = rt.ticks_ms()
        self._deadline = rt.ticks_add(now, timeout_ms)
        self._resend = now
        self._s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._s.setblocking(False)

    def poll(self):
        """(address, ttl s) once answered, (None, 0) while waiting; OSError
        past the deadline or for a name that does not exist."""
        rt = self._rt
        now = rt.ticks_ms()
        while True:
            try:
                msg = self._s.recv(512)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN)):
                    raise
                break
            got = parse(msg, self._id)
            if got is not None:
                return got
        if rt.ticks_diff(now, self._deadline) > 0:
            raise OSError(errno.ETIMEDOUT)
        if rt.ticks_diff(now, self._resend) >= 0:
            self._resend = rt.ticks_add(now, _RESEND_MS)
            try:
                self._s.sendto(self._q, self._to)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN)):
                    raise
        return None, 0

    def close(self):
        try:
            self._s.close()
        except OSError:
            pass
