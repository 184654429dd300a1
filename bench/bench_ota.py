# Firmware update cost (firmware/ota), MicroPython unix port:
#
#   .venv/bin/micropython bench/bench_ota.py [IMAGE_BYTES]     (from the repository root)
#
# A meter on the unix board with the modelled OTA flash (1.625 MiB slots)
# takes an image of IMAGE_BYTES (default 1,600,000: a frozen ESP32 image,
# docs/BUILD.md) through its real link code, water running, on the simulated
# clock. The head-end's answers come back after a link's round trip and
# transfer time (the profiles below); the link steps every 200 ms
# (main.comms_task). Printed per profile: the update time (first request to
# set_boot), the link steps it took. Then, measured on this host: flash
# writes (4 KiB blocks, progress records, otadata entries), the longest
# link step of the download and what it did, the RAM a download holds.
#
# ESP32 projection of the longest step: its CPU part (hashing and Python;
# the time inside the flash model's host file I/O is taken out) x 25, the
# host/ESP32 ratio for compiled C (docs/LINK.md), plus one 4 KiB
# sector erase and program of the flash: 45 ms typical, 400 ms at most
# (Winbond W25Q32JV datasheet, tSE; page program 0.4-3 ms x 16 pages). It
# holds the scheduler (docs/RUNTIME.md section 5) as a state save does.
import sys

for p in ("firmware", ".", "tests/mp", "build/lib"):
    if p not in sys.path:
        sys.path.append(p)

import gc
import json
import time

import otakit
from otakit import Rig, Reset, signed
from boards.unix import ota_model

STEP_MS = 200
_in_flash = [0]          # us spent inside the flash model (its host file I/O) this step


def _timed(fn):
    def wrapper(*a):
        t = time.ticks_us()
        try:
            return fn(*a)
        finally:
            _in_flash[0] += time.ticks_diff(time.ticks_us(), t)
    return wrapper


for _name in ("writeblocks", "readblocks", "ioctl"):
    setattr(ota_model.SimPartition, _name, _timed(getattr(ota_model.SimPartition, _name)))
PROFILES = (   # name, round trip ms, bytes per second
    ("LAN broker", 5, 5_000_000),
    ("home Wi-Fi, far broker", 80, 500_000),
    ("weak Wi-Fi", 300, 40_000),
)


class Image:
    """An app image of n bytes as the unix flash model checks it, kept in a
    file (the unix port's default heap is smaller than the image)."""

    def __init__(self, n, path="/tmp/bench-ota.img"):
        import hashlib
        import struct
        self.path = path
        body_n = n - 40
        head = bytes((0xE9, 0, 0, 0)) + struct.pack("<I", body_n)
        h = hashlib.sha256(head)
        blk = bytearray(4096)
        with open(path, "wb") as f:
            f.write(head)
            done = 0
            while done < body_n:
                k = min(4096, body_n - done)
                for i in range(k):
                    blk[i] = ((done + i) * 131 + ((done + i) >> 8)) & 0xFF
                h.update(memoryview(blk)[:k])
                f.write(memoryview(blk)[:k])
                done += k
            f.write(h.digest())
        self.n = n

    def __len__(self):
        return self.n

    def read(self, o, k):
        with open(self.path, "rb") as f:
            f.seek(o)
            return f.read(k)

    def manifest(self):
        import hashlib
        from binascii import hexlify
        cs = 65536
        whole = hashlib.sha256()
        ch = []
        for o in range(0, self.n, cs):
            h = hashlib.sha256()
            for b in range(o, min(o + cs, self.n), 4096):
                c = self.read(b, min(4096, self.n - b))
                whole.update(c)
                h.update(c)
            ch.append(hexlify(h.digest()).decode())
        d = {"k": "ota", "v": 2, "b": "unix", "sz": self.n, "h": hexlify(whole.digest()).decode(),
             "cs": cs, "ch": ch, "bat": 0, "g": 3}
        return json.dumps(d).encode()


def run(img, rtt_ms, rate, measure=False):
    otakit.SLOT = ota_model.SLOT_SIZE
    rig = Rig()
    rig.m.apply_credit("mqtt", 1, 1, 10_000_000)
    rig.m.confirm()
    rig.hw.world.flow.set_rate_lph(600)
    msg = signed(img.manifest())
    gc.collect()
    idle = gc.mem_alloc()
    rig.offer(msg)
    due = []                    # (ms deliverable, message)
    steps = 0
    longest = (0, "")
    t_first = None
    seen = len(rig.b.published)
    mem0 = None
    kinds = {}
    try:
        while steps < 100_000:
            rig.rt.ms += STEP_MS
            rig.hw.clock.advance(STEP_MS)
            rig.m.poll()
            while due and due[0][0] <= rig.rt.ms:
                rig.b.pending.append((rig.link.t_ota, due.pop(0)[1]))
            u = rig.ota.updater
            before = (u.blocks_written, u.state)
            _in_flash[0] = 0
            t0 = time.ticks_us()
            rig.link.step()
            dt = time.ticks_diff(time.ticks_us(), t0) - _in_flash[0]
            if measure:
                gc.collect()     # a GC pass is the collector's hold, not the step's
            steps += 1
            if measure and t_first is not None:
                kinds.setdefault("program" if u.blocks_written > before[0] else (
                    "verify" if before[1] == 2 else "erase, record or request"), []).append(dt)
            if measure and dt > longest[0] and t_first is not None:
                what = "verify 4 blocks" if before[1] == 2 else (
                    "block program" if u.blocks_written > before[0] else "erase, record or request")
                if u.blocks_written > before[0] and u.p.get("o", 1) % 65536 == 0:
                    what += " and the chunk's progress record"
                longest = (dt, what)
            if measure and mem0 is None and u.state == 1 and u.progress() >= 50:
                gc.collect()
                mem0 = gc.mem_alloc() - idle
            for t, p, _, _ in rig.b.published[seen:]:
                if t == rig.link.t_ota_req:
                    if t_first is None:
                        t_first = rig.rt.ms
                    r = json.loads(p)
                    at = rig.rt.ms + rtt_ms + r["n"] * 1000 // rate
                    for o in range(r["o"], r["o"] + r["n"], otakit.PIECE):
                        k = min(otakit.PIECE, r["o"] + r["n"] - o)
                        due.append((at, b"D" + o.to_bytes(4, "big") + img.read(o, k)))
            del rig.b.published[:]     # the test broker's record: not the meter's RAM
            seen = 0
    except Reset:
        pass
    return rig, rig.rt.ms - t_first, steps, (longest, kinds), mem0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_600_000
    img = Image(n)
    print("image %d bytes, %d blocks of 4096, %d chunks of 64 KiB" % (
        len(img), (len(img) + 4095) // 4096, (len(img) + 65535) // 65536))
    print("%-26s %10s %8s" % ("link profile", "update s", "steps"))
    worst = None
    for name, rtt, rate in PROFILES:
        rig, ms, steps, longest, mem = run(img, rtt, rate, measure=worst is None)
        if worst is None:
            worst = (rig, longest, mem)
        print("%-26s %10.1f %8d" % (name, ms / 1000, steps))
    rig, (longest, kinds), mem = worst
    u = rig.ota.updater
    print("flash: %d block erases and %d block programs (4 KiB), %d progress records"
          " (two-copy CRC file), %d otadata write before the reset" % (
              rig.flash.erases, rig.flash.block_writes, u.store.writes,
              rig.flash.ops - rig.flash.block_writes - rig.flash.erases))
    print("water: %d pulses emitted, %d counted during the download" % (
        rig.hw.world.flow.emitted, rig.m.volume.ml() // 1000))
    print("longest link step of the download on this host, the flash model's file I/O"
          " left out: %.2f ms (%s)" % (
        longest[0] / 1000, longest[1]))
    for k in sorted(kinds):
        v = sorted(kinds[k])
        print("  %-25s steps: median %.2f ms, 99th percentile %.2f ms, n=%d" % (
            k, v[len(v) // 2] / 1000, v[len(v) * 99 // 100] / 1000, len(v)))
    print("projected on an ESP32: %.0f ms CPU + one flash operation: a 4 KiB erase 45 ms typ."
          " (400 ms max) or a 4 KiB program 6-48 ms (16 pages of 0.4-3 ms)" % (longest[0] * 25 / 1000))
    print("heap held half-way through the download (after gc): %d bytes more than before the"
          " manifest (block buffer 4096, manifest, progress, link inbox)" % mem)


main()
