# Card path figures, from the simulated board (MicroPython unix port):
#
#   .venv/bin/micropython bench/bench_card.py        (from the repository root)
#
# Times are MODELLED, not measured: the SimSPI bus charges 8 bits per byte at
# the SPI clock, the MFRC522 model charges ISO 14443-A air time (106 kbit/s,
# 9.44 us per bit incl. parity/SOF/EOF) and the card model's answer times,
# and the driver's own sleeps count. Not included: MicroPython CPU time on the
# ESP32 (per SPI call and per record, crypto included), the meter's flash
# commit inside apply_credit, and CS set-up time.
#
# Card answer times: "fast" = frame delay time (86 us) for every answer and
# an assumed 2.5 ms EEPROM programming time per block write; "slow" = every
# answer arrives at 90 % of the MF1S50 time-out table (auth 1 ms per step,
# read 5 ms, write 5 + 10 ms, transfer 10 ms): a pessimistic upper bound.
import sys

for p in ("firmware", ".", "tests/mp"):
    if p not in sys.path:
        sys.path.append(p)

from boards.unix.mifare_card import ClassicCard, value_block
from test_card_rig import FakeMeter, Rig, user_card, testing_meter_keys
from card.session import Session

BOARD_SPI = 4_000_000  # boards/unix SPI_BAUD (and the ESP32 boards' card bus)
FF = b"\xff" * 6


class Bench(Rig):
    """The card tests' rig (reader model on a SimSPI bus, the driver on top),
    plus a measuring helper."""

    def measure(self, fn):
        t, b, us = self.spi.transfers, self.spi.bytes, self.clock.now_us()
        fn()
        return self.spi.transfers - t, self.spi.bytes - b, self.clock.now_us() - us


def ops_table(baud, slow):
    b = Bench(baud)
    rc = b.rc
    c = ClassicCard(b"\x11\x22\x33\x44")
    c.slow = slow
    c7 = ClassicCard(b"\x04\x5a\x6b\x7c\x8d\x9e\x80", 4096)
    c7.slow = slow
    buf = bytearray(16)
    rows = []
    rc.request()
    rows.append(("poll, no card", b.measure(rc.request)))
    b.model.place(c)
    rows.append(("REQA + anticoll/SELECT, 4-byte UID", b.measure(lambda: (rc.request(), rc.select()))))
    rows.append(("auth (key A)", b.measure(lambda: rc.auth(7, FF))))
    rows.append(("READ 16 bytes", b.measure(lambda: rc.read(4, buf))))
    rows.append(("WRITE 16 bytes", b.measure(lambda: rc.write(4, b"0123456789abcdef"))))
    rc.write(5, value_block(100, 5))
    rows.append(("INCREMENT + TRANSFER", b.measure(lambda: (rc.increment(5, 1), rc.transfer(5)))))
    rows.append(("HLTA", b.measure(rc.halt)))
    b.model.remove()
    b.model.place(c7)
    rows.append(("REQA + anticoll/SELECT, 7-byte UID", b.measure(lambda: (rc.request(), rc.select()))))
    return rows


def tap(baud, slow, uid=b"\x11\x22\x33\x44", size=1024):
    b = Bench(baud)
    m = FakeMeter()
    s = Session(b.rc, m, testing_meter_keys("M000001"), b.clock)
    c, h = user_card(uid=uid, size=size, amount=1_000_000, seq=1)
    c.slow = slow
    b.model.place(c)
    res = []
    r = b.measure(lambda: res.append(s.poll()))
    assert res[0] == 0 and m.balance == 1_000_000
    return r, b.model.frames


def tariff_tap():
    """An office-signed tariff card on the simulated board with a real
    Meter: (modelled card time us, unix CPU time of the tap us)."""
    import json
    import time
    from test_card_rig import meter_rig, signed_card, tap as place_and_poll
    from card.records import CARD_TARIFF
    m, hw, s = meter_rig()
    doc = {"k": "tariff", "r": 1, "v": m.billing.tariff.version + 1, "at": 0, "sc": 0,
           "b": [[10_000, 300_000], [0, 500_000]]}
    c = signed_card(CARD_TARIFF, doc)
    t0, c0 = hw.clock.now_us(), time.ticks_us()
    code = place_and_poll(hw, s, c)
    cpu = time.ticks_diff(time.ticks_us(), c0)
    assert code == 0 and m.billing.tariff.version == doc["v"], code
    return hw.clock.now_us() - t0, cpu, len(json.dumps(doc))


def main():
    print("MFRC522 + MIFARE Classic, modelled at SPI %d MHz" % (BOARD_SPI // 1_000_000))
    print()
    for slow, label in ((0, "fast card"), (100, "slow card (datasheet time-outs)")):
        print("per operation, %s:" % label)
        print("  %-38s %9s %6s %10s" % ("operation", "transfers", "bytes", "time us"))
        for name, (t, nb, us) in ops_table(BOARD_SPI, slow):
            print("  %-38s %9d %6d %10d" % (name, t, nb, us))
        print()
    print("tap-to-credit (user card: select, 4 auths, 10 reads, 3 writes, halt;")
    print("meter commit time not included):")
    print("  %-34s %9s %6s %7s %10s" % ("case", "transfers", "bytes", "frames", "time ms"))
    for baud in (1_000_000, BOARD_SPI, 10_000_000):
        for slow in (0, 100):
            for uid, size, kind in ((b"\x11\x22\x33\x44", 1024, "1K/4B"),
                                    (b"\x04\x5a\x6b\x7c\x8d\x9e\x80", 4096, "4K/7B")):
                if kind == "4K/7B" and baud != BOARD_SPI:
                    continue
                (t, nb, us), frames = tap(baud, slow, uid, size)
                name = "%2d MHz %s %s" % (baud // 1_000_000, kind, "slow" if slow else "fast")
                print("  %-34s %9d %6d %7d %10.1f" % (name, t, nb, frames, us / 1000))
    print()
    b = Bench(BOARD_SPI)
    b.rc.request()
    t, nb, us = b.measure(b.rc.request)
    print("no-card poll: %d transfers, %d bytes, %d us of bus+air time, %d status polls"
          % (t, nb, us, b.rc.polls))
    print("  at one poll per second: %d SPI bytes/day, reader busy %.3f %% of the time"
          % (nb * 86400, us / 10_000))
    print()
    # a credit tap does no signature check (per-meter MACs); a tariff card does one
    import bench_sig
    sig = bench_sig.measure()
    card_us, cpu_us, n = tariff_tap()
    print("tariff card tap (office-signed, %d-byte document, read only; card may leave" % n)
    print("after the read):")
    print("  card I/O, modelled                %8.1f ms" % (card_us / 1000))
    print("  CPU on the unix port, whole tap   %8.1f ms  (signature verify alone %.1f ms)"
          % (cpu_us / 1000, sig["verify_us"] / 1000))
    print("  signature verify on ESP32         %8.2f s   PROJECTED (bench_sig.py: cpu ratio %.0f,"
          " mpz x4)" % (sig["esp32_s"], sig["cpu_ratio"]))


main()
