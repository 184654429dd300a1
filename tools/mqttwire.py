"""MQTT 3.1.1 framing for the small hand-written brokers of the tests and
benches: the ones that must send what Mosquitto would refuse to pass on
(an oversized packet, a stalled stream), so they cannot be Mosquitto."""


def remaining_length(n):
    """The variable-length 'remaining length' field (MQTT 3.1.1 §2.2.3)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_packet(sock):
    """One packet from a blocking socket: (first header byte, body).
    OSError("closed") when the peer closes."""
    h = sock.recv(1)
    if not h:
        raise OSError("closed")
    n, shift = 0, 0
    while True:
        b = sock.recv(1)
        if not b:
            raise OSError("closed")
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = b""
    while len(body) < n:
        part = sock.recv(n - len(body))
        if not part:
            raise OSError("closed")
        body += part
    return h[0], body


def publish_qos1(topic, pid, payload):
    """A QoS 1 PUBLISH packet (no DUP, no RETAIN)."""
    var = len(topic).to_bytes(2, "big") + topic + pid.to_bytes(2, "big")
    return b"\x32" + remaining_length(len(var) + len(payload)) + var + payload


def answer(sock, first, body):
    """What any broker answers to the client's packet (first header byte,
    body): CONNACK (accepted) to CONNECT, SUBACK granting QoS 1 to
    SUBSCRIBE, PUBACK to a QoS 1 PUBLISH, PINGRESP to PINGREQ; nothing to
    the rest (a PUBACK, QoS 0)."""
    if first == 0x10:
        sock.sendall(b"\x20\x02\x00\x00")
    elif first == 0x82:
        sock.sendall(b"\x90\x03" + body[:2] + b"\x01")
    elif first & 0xF0 == 0x30 and first & 6 == 2:
        tl = int.from_bytes(body[:2], "big")
        sock.sendall(b"\x40\x02" + body[2 + tl:4 + tl])
    elif first == 0xC0:
        sock.sendall(b"\xd0\x00")


if __name__ == "__main__":
    from libscript import not_a_command
    not_a_command(__doc__, "from mqttwire import answer, publish_qos1, read_packet  (tests/host/test_mqtt_heal.py, bench/bench_link_stall.py)")
