"""The longest meter-loop stall the MQTT link causes, against hostile networks.

    .venv/bin/python bench/bench_link_stall.py [SECONDS]

Each condition runs the firmware's meter and comms tasks (bench/mp_link_stall.py
on the unix port) for SECONDS (default 8) of real time, and reports the longest
single link.step() and the longest lateness of a 10 ms probe task in the same
loop. Target: <= 50 ms each (docs/LINK.md). Conditions:

  stall     a broker that accepts TCP and then says nothing (TLS: no ServerHello)
  blackhole an address whose SYNs are never answered (a full listen backlog)
  slow-tls  the real Mosquitto TLS broker behind a proxy that passes 100 bytes
            per 150 ms each way, so the handshake takes seconds
  dns       a broker given by name, with a DNS server that never answers
  1mb       a broker that sends a 1 MB QoS 1 command (refused by its length)
  normal    the real Mosquitto over TLS, for comparison (full-speed handshakes)

Host figures: on an ESP32 the same steps cost more CPU; docs/LINK.md lists the
steps that cannot yield and projects them.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from broker import Broker
from mqttwire import answer, publish_qos1, read_packet

sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env

TARGET_MS = 50


def run_meter(host, port, tls, ca_der, dns, seconds):
    with tempfile.TemporaryDirectory(prefix="stall-") as d:
        ca = "-"
        if ca_der:
            ca = os.path.join(d, "ca.der")
            Path(ca).write_bytes(ca_der)
        out = subprocess.run([MICROPYTHON, str(ROOT / "bench" / "mp_link_stall.py"), d, host, str(port),
                              "1" if tls else "0", ca, dns or "-", str(seconds)],
                             env=mp_env(), capture_output=True,
                             check=False, text=True, timeout=seconds + 60, cwd=str(ROOT))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(lines[-1])


def _serve(listener, handler):
    def loop():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def listener(backlog=8):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s


def cond_stall(seconds, ca_der):
    held = []
    s = listener()
    _serve(s, held.append)          # accepted, never read, never answered
    try:
        return run_meter("127.0.0.1", s.getsockname()[1], True, ca_der, None, seconds)
    finally:
        s.close()


def cond_blackhole(seconds):
    # a listen backlog that is full and never accepted: Linux drops further
    # SYNs, so the meter's connect sees no answer at all
    s = listener(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.2)
    try:
        return run_meter("127.0.0.1", port, False, None, None, seconds)
    finally:
        for f in fillers:
            f.close()
        s.close()


def cond_slow_tls(seconds, broker, ca_der):
    def pipe(src, dst):
        try:
            while True:
                b = src.recv(100)
                if not b:
                    break
                time.sleep(0.15)
                dst.sendall(b)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.close()
            except OSError:
                pass

    def handle(c):
        up = socket.create_connection((broker.host, broker.port))
        threading.Thread(target=pipe, args=(c, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, c), daemon=True).start()

    s = listener()
    _serve(s, handle)
    try:
        r = run_meter("127.0.0.1", s.getsockname()[1], True, ca_der, None, seconds)
    finally:
        s.close()
    return r


def cond_dns(seconds):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))            # takes the queries, answers none
    try:
        return run_meter("broker.invalid", 1883, False, None,
                         f"127.0.0.1:{u.getsockname()[1]}", seconds)
    finally:
        u.close()


def cond_1mb(seconds, size=1 << 20):
    """A minimal broker: CONNACK, SUBACKs, then one oversized QoS 1 command."""
    seen = {"puback": 0}

    def handle(c):
        try:
            while True:
                t, body = read_packet(c)
                answer(c, t, body)
                if t == 0x82 and b"/c" in body:
                    topic = b"m/B01/c"
                    var_len = 2 + len(topic) + 2              # topic length, topic, packet id 7
                    c.sendall(publish_qos1(topic, 7, b"x" * (size - var_len - 6)))
                elif t == 0x40 and body == b"\x00\x07":
                    seen["puback"] += 1
        except OSError:
            pass

    s = listener()
    _serve(s, handle)
    try:
        r = run_meter("127.0.0.1", s.getsockname()[1], False, None, None, seconds)
    finally:
        s.close()
    r["puback_of_1mb"] = seen["puback"]
    return r


def ca_der(broker):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    return x509.load_pem_x509_certificate(broker.ca_pem.encode()).public_bytes(Encoding.DER)


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    results = []
    with Broker(tls=True) as b:
        der = ca_der(b)
        results.append(("stall", cond_stall(seconds, der)))
        results.append(("blackhole", cond_blackhole(seconds)))
        results.append(("slow-tls", cond_slow_tls(max(seconds, 12), b, der)))
        results.append(("dns", cond_dns(seconds)))
        results.append(("1mb", cond_1mb(seconds)))
        results.append(("normal", run_meter(b.host, b.port, True, der, None, seconds)))
    print("MQTT link: longest meter-loop stall per condition (host, unix port)")
    print(f"{'condition':10} {'step max ms':>12} {'probe late':>12} {'steps':>7} "
          f"{'connects':>9} {'failures':>9}  last error")
    worst = 0.0
    for name, r in results:
        worst = max(worst, r["max_step_ms"], r["max_late_ms"])
        extra = ""
        if "puback_of_1mb" in r:
            extra = f"  (1 MB refused {r['oversized']} times, PUBACKed {r['puback_of_1mb']})"
        print(f"{name:10} {r['max_step_ms']:12.1f} {r['max_late_ms']:12d} {r['steps']:7d} "
              f"{r['connects']:9d} {r['failures']:9d}  {r['err']}{extra}")
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"worst {worst:.1f} ms; target <= {TARGET_MS} ms: {verdict}")


if __name__ == "__main__":
    main()
