# Office-signature verify cost (firmware/crypto/p256.py), MicroPython unix port:
#
#   .venv/bin/micropython bench/bench_sig.py        (from the repository root)
#
# Measured here: one ECDSA P-256 verify, and a reference loop of 256-bit
# multiply + reduce mod p against the same loop on small ints, which splits
# the cost into interpreter work and big-int (mpz) work.
#
# The ESP32 figure is a PROJECTION, not a measurement (no board here):
#   interpreter: this host's pystone rate / an ESP32's pystone rate.
#     ESP32 @ 240 MHz: 1661 pystones/s (MicroPython 1.12, pystone_lowmem,
#     reported in micropython/micropython#5673; another report gives 1075,
#     v923z/micropython-ulab#296, so the projection may be 1.5x optimistic).
#     This host: HOST_PYSTONES below, measured with MicroPython's
#     tests/perf_bench/misc_pystone.py (Proc0(50000)) on the unix port; the
#     bench rescales it by the reference loop measured in the same run, so a
#     slower or busier host still projects the same ESP32 time.
#   big ints: mpz digits are 32 bits on x86-64 and 16 bits on a 32-bit port
#     (py/mpz.h, MPZ_DIG_SIZE), so a 256-bit multiply or division does 4x
#     the digit products on the ESP32 (schoolbook, quadratic in digits).
#   projected = verify_unix * cpu_ratio * ((1 - f) + 4 * f), f = mpz share.
import sys
import time
import hashlib

for p in ("firmware", ".", "tests/mp"):
    if p not in sys.path:
        sys.path.append(p)

from crypto import p256

HOST_PYSTONES = 300_000     # unix port, this host (see above), measured with...
REF_CAL_US = 0.96           # ...this reference-loop time (us per 256-bit mulmod)
ESP32_PYSTONES = 1661       # 240 MHz, micropython#5673
DIGIT_FACTOR = 4            # (32-bit / 16-bit digits) squared
REF_N = 20_000

def _ticks(fn, n):
    t = time.ticks_us()
    fn(n)
    return time.ticks_diff(time.ticks_us(), t)


def _ref_big(n):
    a, b, p = p256._GX, p256._GY, p256._P
    for _ in range(n):
        a = a * b % p


def _ref_small(n):
    a, b, p = 12345, 678, 1000003
    for _ in range(n):
        a = a * b % p


def _best(fn, arg, runs=5):
    return min(_ticks(fn, arg) for _ in range(runs))


def _vector():
    # a fixed key and signature from the fixture (made by `cryptography`)
    import json
    with open("tests/fixtures/p256_vectors.json") as f:
        for c in json.load(f)["p256"]:
            if c["ok"]:
                return (bytes.fromhex(c["pub"]), hashlib.sha256(bytes.fromhex(c["msg"])).digest(),
                        bytes.fromhex(c["sig"]))


def measure():
    """Figures of one run: verify (us), the reference loops, the mpz share
    f, the CPU ratio, and the projected ESP32 verify time (s)."""
    pub, digest, sig = _vector()

    def verify(n):
        for _ in range(n):
            if not p256.verify(pub, digest, sig):
                raise SystemExit("verify failed: fixture or code broken")

    runs = 10
    verify_us = _best(verify, runs) / runs
    big = _best(_ref_big, REF_N) / REF_N
    small = _best(_ref_small, REF_N) / REF_N
    f = (big - small) / big
    ref_pystones = HOST_PYSTONES * REF_CAL_US / big
    cpu_ratio = ref_pystones / ESP32_PYSTONES
    return {"verify_us": verify_us, "big_us": big, "small_us": small, "f": f,
            "ref_pystones": ref_pystones, "cpu_ratio": cpu_ratio,
            "esp32_s": project(verify_us, f, cpu_ratio)}


def project(unix_us, f, cpu_ratio):
    """ESP32 seconds for unix_us of this kind of work (see the header)."""
    return unix_us * cpu_ratio * ((1 - f) + DIGIT_FACTOR * f) / 1e6


def main():
    r = measure()
    print("ECDSA P-256 verify (firmware/crypto/p256.py), MicroPython unix port")
    print("  verify                         %8.2f ms" % (r["verify_us"] / 1000))
    print("  reference: 256-bit a*b %% p     %8.2f us   small-int a*b %% p %6.2f us"
          % (r["big_us"], r["small_us"]))
    print("  verify = %.0f reference mulmods; mpz share f = %.2f" % (r["verify_us"] / r["big_us"], r["f"]))
    print("projection to ESP32 @ 240 MHz (NOT measured):")
    print("  host pystones %d (rescaled by the reference loop: %.0f), ESP32 %d -> cpu ratio %.0f"
          % (HOST_PYSTONES, r["ref_pystones"], ESP32_PYSTONES, r["cpu_ratio"]))
    print("  big-int digits 32 -> 16 bits: x%d on the mpz share" % DIGIT_FACTOR)
    print("  projected verify on ESP32      %8.2f s   (a tariff card tap, a multi-meter card"
          " or a region tariff / fleet command pays this once)" % r["esp32_s"])


if __name__ == "__main__":
    main()
