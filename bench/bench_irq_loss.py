"""Pulses lost on an IRQ-counting board (ESP32-C3) while the scheduler is held.

    .venv/bin/python bench/bench_irq_loss.py

The firmware's IrqSource counts the unix board's flow model through the model
of the ESP32 port's 8-slot soft-IRQ queue (boards/unix/softirq.py,
docs/RUNTIME.md), at Q3 = 2.5 m3/h and 1, 3 (the C3's limit), 10, 100 and
450 pulses/L, through
these timelines of one minute each (bench/mp_irq_loss.py):

  outage       the broker down: connect attempts with backoff
  reconnect    one TCP connect to the broker
  tls          one TLS handshake: three CPU-bound calls, one per
               server record (docs/LINK.md), projected 0.2 s each at 240 MHz
  tls-high     the same at the upper end: max(1.0 s, host x 25) in all
  timer-model  the rejected design (docs/RUNTIME.md section 3): each slice a
               soft callback, a 50 ms link step every 200 ms

Every timeline also has what a flowing meter always does: a state save every
10 L (config save_l; 14.4 s at Q3), each one 4 KB flash sector erase, and a
GC pass every 10 s. With the REPL open the session saves every 5 s instead
(service.SESSION_SAVE_S): more erases, the same bound per erase.

How the holds are projected (there is no board here):
  - host figures are measured in this run in the unix port: a TLS client
    handshake against a local OpenSSL server with a P-256 certificate, a GC
    pass over a 512 KiB heap holding an assembled meter, and a refused
    connect();
  - compiled C runs 15-25 times slower on a 240 MHz ESP32 than on a desktop
    core (docs/LINK.md); the bench takes 25;
  - the TLS handshake is 0.6 s in three calls of 0.2 s: docs/LINK.md counts
    about six P-256 scalar multiplications at about 100 ms each with mbedTLS
    on the ESP32 (the ECDSA verifies of the certificate and of the
    ServerKeyExchange, the ECDHE key pair and shared secret), and its link
    feeds the handshake one server record per call; tls-high takes the larger
    of 1.0 s (the top of that estimate) and the host handshake x 25, split
    the same way. Both ignore the ESP32's big-number accelerator, so they are
    on the slow side;
  - the C3 runs the same code at 160 MHz: CPU holds x 1.5;
  - a sector erase is the flash's datasheet figure (W25Q32JV: 45 ms typical,
    400 ms maximum), the same on every chip.

The highest safe rate follows from the longest hold D of each kind at flow
q: the queue keeps 8 edges, so a CPU hold is safe while 8 / (D q) exceeds K;
the deferred GPIO interrupt keeps one edge, so a flash erase is safe while
1 / (D q) exceeds K. PCNT boards (ESP32, S3) count in hardware through all
of it: their rows show it.
"""

import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from broker import make_test_pki

sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env

Q3_LPS = 2500 / 3600          # litres per second at Q3
QUEUE, LATCH = 8, 1           # edges kept: the schedule queue; the deferred GPIO interrupt


def tls_server(cert, key):
    """A TLS server on a free loopback port that completes handshakes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as t:
                    t.recv(1)            # until the client closes
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv


def refused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                         # nobody listens there now
    return port


def safe_k(hold_us, kept):
    """Highest whole pulses/L for which a hold of hold_us loses nothing."""
    if hold_us <= 0:
        return None
    limit = kept / (hold_us / 1e6 * Q3_LPS)   # K must stay below this
    k = int(limit)
    return k - 1 if k == limit else k


def main():
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ca, cert, key = make_test_pki(d)
        der = d / "ca.der"
        der.write_bytes(x509.load_pem_x509_certificate(ca.read_bytes()).public_bytes(Encoding.DER))
        srv = tls_server(cert, key)
        try:
            p = subprocess.run([MICROPYTHON, "-X", "heapsize=512K", str(ROOT / "bench" / "mp_irq_loss.py"),
                                str(srv.getsockname()[1]), str(der), str(refused_port())],
                               cwd=str(ROOT), env=mp_env(),
                               capture_output=True, text=True, timeout=600, check=False)
        finally:
            srv.close()
    if p.returncode != 0:
        raise SystemExit("mp_irq_loss.py failed:\n" + p.stdout + p.stderr)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    host, h, c3 = r["host_us"], r["holds_esp32_us"], r["holds_c3_us"]
    print(f"Pulse loss on an IRQ-counting board at Q3 = 2.5 m3/h ({Q3_LPS:.3f} L/s)")
    print("host, measured: TLS handshake {:.1f} ms, GC pass {:.2f} ms, refused connect {:.3f} ms".format(host["tls"] / 1e3, host["gc"] / 1e3, host["connect"] / 1e3))
    print("holds, projected (ms)        ESP32@240  C3@160")
    for k in ("tls", "tls_high", "gc", "connect", "erase"):
        print("  %-26s %9.1f %7.1f" % (k, h[k] / 1e3, c3[k] / 1e3))
    print()
    print("%-12s %6s %8s %8s %8s  %s" % ("scenario", "K/L", "pulses", "C3 lost", "PCNT lost",
                                         "C3: longest CPU hold / flash hold"))
    by = {}
    for row in r["rows"]:
        by.setdefault((row["scenario"], row["k"]), {})[row["pulse"]] = row
    worst = {}
    for (name, k), b in by.items():
        irq, pc = b["irq"], b["counter"]
        lost, lost_pc = irq["emitted"] - irq["counted"], pc["emitted"] - pc["counted"]
        print("%-12s %6d %8d %8d %8d  %.0f / %.0f ms" % (
            name, k, irq["emitted"], lost, lost_pc, irq["longest_cpu_us"] / 1e3,
            irq["longest_flash_us"] / 1e3))
        worst[name] = (irq["longest_cpu_us"], irq["longest_flash_us"])
    print()
    print("highest safe rate on the C3 (0 lost), at Q3:")
    for name, (cpu, flash) in worst.items():
        ks = [x for x in (safe_k(cpu, QUEUE), safe_k(flash, LATCH)) if x is not None]
        k = min(ks)
        print("  %-12s %4d pulses/L  (%5.1f Hz)   queue-bound %s, erase-bound %s" % (
            name, k, k * Q3_LPS, safe_k(cpu, QUEUE), safe_k(flash, LATCH)))
    k_max = safe_k(400_000, LATCH)
    print("  a 400 ms erase (the datasheet maximum) allows %d pulses/L" % k_max)
    limit = min([k_max] + [min(x for x in (safe_k(c, QUEUE), safe_k(f, LATCH)) if x is not None)
                           for name, (c, f) in worst.items() if name != "timer-model"])
    print("C3 sensor limit (every row but the rejected timer model, and the 400 ms erase):"
          " %d pulses/L at Q3" % limit)


if __name__ == "__main__":
    main()
