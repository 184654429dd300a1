# Service PIN check cost (firmware/pinkdf.py, PBKDF2-HMAC-SHA256), unix port:
#
#   .venv/bin/micropython bench/bench_pin.py        (from the repository root)
#
# The ESP32 figure is a PROJECTION, made as bench/bench_sig.py makes its own:
# this host's interpreter speed, rescaled by the same reference loop (256-bit
# a*b % p, calibrated there at REF_CAL_US for HOST_PYSTONES), against an
# ESP32's 1661 pystones/s at 240 MHz (micropython#5673). All of a round is
# counted as interpreter work, although the two SHA-256 calls per HMAC are C
# on both sides, so the projection is an upper bound.
import sys
import time

for p in ("firmware", "."):
    if p not in sys.path:
        sys.path.append(p)

import pinkdf

HOST_PYSTONES = 300_000     # bench/bench_sig.py
REF_CAL_US = 0.96
ESP32_PYSTONES = 1661
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def _ticks(fn, *a):
    t = time.ticks_us()
    fn(*a)
    return time.ticks_diff(time.ticks_us(), t)


def _ref_big(n):
    a, b, p = _GX, _GY, _P
    for _ in range(n):
        a = a * b % p


def main():
    rounds = pinkdf.ROUNDS
    check_us = min(_ticks(pinkdf.pbkdf2_sha256, b"12345678", b"per-meter-salt16", rounds)
                   for _ in range(5))
    big = min(_ticks(_ref_big, 20_000) for _ in range(5)) / 20_000
    cpu_ratio = HOST_PYSTONES * REF_CAL_US / big / ESP32_PYSTONES
    proj_s = check_us * cpu_ratio / 1e6
    print("Service PIN check: PBKDF2-HMAC-SHA256, %d rounds (firmware/pinkdf.py)" % rounds)
    print("  unix port                      %8.2f ms   (%.2f us a round)" % (check_us / 1000, check_us / rounds))
    print("projection to ESP32 @ 240 MHz (NOT measured, upper bound):")
    print("  cpu ratio %.0f -> one unlock() %.2f s" % (cpu_ratio, proj_s))

main()
