# comms/dns.py against a DNS server played by the test itself over real UDP
# sockets on loopback (the lookup never blocks, so one process can be both
# sides), on a hand-stepped clock for the deadlines.
import errno
import os
import socket
import struct

from comms import dns
from comms.net import Dialer, is_literal
from commskit import FakeRT
from mptest import raises


def _server():
    """A UDP socket on a free loopback port, and the port (the unix port's
    sockets have no getsockname, so the port is chosen here)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
    for _ in range(50):
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            port += 1
    s.setblocking(False)
    return s, port


def _answer(query, ip=None, rcode=0, ttl=300):
    qid = struct.unpack_from("!H", query, 0)[0]
    flags = 0x8180 | rcode
    head = struct.pack("!HHHHHH", qid, flags, 1, 1 if ip else 0, 0, 0)
    question = query[12:]
    if not ip:
        return head + question
    # the answer's name is a compression pointer to the question (offset 12)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + bytes(int(p) for p in ip.split("."))
    return head + question + rr


def _serve_one(srv, **answer):
    try:
        q, addr = srv.recvfrom(512)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return False
        raise
    srv.sendto(_answer(q, **answer), addr)
    return True


def test_lookup_asks_over_udp_and_reads_a_compressed_answer():
    srv, port = _server()
    rt = FakeRT()
    lk = dns.Lookup("broker.example", "127.0.0.1:%d" % port, 3000, rt)
    assert lk.poll() == (None, 0)             # asked, nothing yet: no waiting
    for _ in range(100):
        if _serve_one(srv, ip="10.1.2.3", ttl=120):
            break
    got = (None, 0)
    for _ in range(100):
        got = lk.poll()
        if got[0]:
            break
    assert got == ("10.1.2.3", 120)
    lk.close()
    srv.close()


def test_a_silent_server_ends_at_the_deadline_and_the_query_is_repeated():
    srv, port = _server()
    rt = FakeRT()
    lk = dns.Lookup("broker.example", "127.0.0.1:%d" % port, 3000, rt)
    asked = 0
    for _ in range(30):
        lk.poll()
        while True:
            try:
                srv.recvfrom(512)
                asked += 1
            except OSError:
                break
        rt.ms += 100
    assert asked >= 3, "a lost datagram must be asked again (every second)"
    rt.ms += 1000
    e = raises(OSError, lk.poll)
    assert e.errno == errno.ETIMEDOUT
    lk.close()
    srv.close()


def test_a_name_that_does_not_exist_is_an_error_not_a_wait():
    q = dns._query(7, "nope.example")
    raises(OSError, dns.parse, _answer(q, rcode=3), 7)      # NXDOMAIN
    raises(OSError, dns.parse, _answer(q), 7)               # no A record
    assert dns.parse(_answer(q, ip="1.2.3.4"), 8) is None   # someone else's id: ignored
    raises(OSError, dns._query, 1, "a..b")


def test_a_literal_needs_no_dns_and_a_name_needs_a_server():
    assert is_literal("127.0.0.1") and not is_literal("broker.example")
    assert not is_literal("1.2.3.256") and not is_literal("1.2.3")
    d = Dialer("127.0.0.1", 1883)
    assert d.addr == "127.0.0.1"
    d = Dialer("broker.example", 1883)
    c = d.client("M1", 60)
    c.open(False)
    e = raises(OSError, c.poll)
    assert e.errno == errno.EINVAL
