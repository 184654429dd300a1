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


if __name__ == "__main__":
    from libscript import not_a_command
    not_a_command(__doc__, "from mqttwire import publish_qos1, read_packet  (tests/host/test_mqtt_heal.py, bench/bench_link_stall.py)")
