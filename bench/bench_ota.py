# Firmware update cost (firmware/ota), MicroPython unix port:
#
#   .venv/bin/micropython bench/bench_ota.py [IMAGE_BYTES]     (from the repository root)
#
# A meter on the unix board with the modelled OTA flash (1.625 MiB slots)
# takes an image of IMAGE_BYTES (default 1,600,000: a frozen ESP32 image,
# docs/BUILD.md) through its real link code, water running, on the simulated
# clock, from the manifest to `valid`: the signature check, the download and
# verify (set_boot, then the reset), and the new image's first boot (its
# partition hashed, the self-test, the floor, marked valid). The head-end's
# answers come back after a link's round trip and transfer time (the
# profiles below); the link steps every 200 ms (main.comms_task). Printed
# per profile: the time of each phase and the link steps. Then, measured on
# this host: flash writes (4 KiB blocks, progress records, otadata entries),
# the longest link step of each phase (the meter loop runs poll then step,
# so it is the loop's stall) with and without the host file I/O that is a
# flash write on the chip (the flash model, the two-copy state files), the
# set_boot call, the RAM a download holds.
#
# ESP32 projection of the longest step: its CPU part x 25, the host/ESP32
# ratio for compiled C (docs/LINK.md), plus one 4 KiB sector erase and
# program of the flash: 45 ms typical, 400 ms at most (Winbond W25Q32JV
# datasheet, tSE; page program 0.4-3 ms x 16 pages). It holds the
# scheduler (docs/RUNTIME.md section 5) as a state save does.
import sys

for p in ("firmware", ".", "tests/mp", "build/lib"):
    if p not in sys.path:
        sys.path.append(p)

import gc
import json
import time

import otakit
from otakit import FileImage as Image, Rig, Reset, signed
from boards.unix import ota_model
from storage.state import StateStore

STEP_MS = 200
_in_flash = [0]          # us spent this step in host file I/O that is flash on the chip


def _timed(fn):
    def wrapper(*a):
        t = time.ticks_us()
        try:
            return fn(*a)
        finally:
            _in_flash[0] += time.ticks_diff(time.ticks_us(), t)
    return wrapper


for _name in ("writeblocks", "readblocks", "ioctl", "set_boot"):
    setattr(ota_model.SimPartition, _name, _timed(getattr(ota_model.SimPartition, _name)))
ota_model.OtaFlash.mark_app_valid_cancel_rollback = _timed(ota_model.OtaFlash.mark_app_valid_cancel_rollback)
# the two-copy state files (the meter's state, the progress record): flash
# writes on the chip, host file I/O here, left out of the CPU figure as well
StateStore.save = _timed(StateStore.save)
_set_boot = [0]          # us of the host's set_boot (the model hashes the whole image in it)
_plain_set_boot = ota_model.SimPartition.set_boot


def _timed_set_boot(self):
    t = time.ticks_us()
    try:
        return _plain_set_boot(self)
    finally:
        _set_boot[0] = time.ticks_diff(time.ticks_us(), t)


ota_model.SimPartition.set_boot = _timed_set_boot
PROFILES = (   # name, round trip ms, bytes per second
    ("LAN broker", 5, 5_000_000),
    ("home Wi-Fi, far broker", 80, 500_000),
    ("weak Wi-Fi", 300, 40_000),
)


class Steps:
    """Link steps of one phase: how many, the longest (what the meter loop
    waits on, since the loop runs poll then step), with and without the
    flash model's host file I/O, and what that step did."""

    def __init__(self):
        self.n = 0
        self.cpu = (0, "")       # (us without the host file I/O of flash writes, what the step did)
        self.whole = 0           # us, file I/O included: this host's loop stall
        self.kinds = {}

    def add(self, cpu_us, whole_us, what):
        self.n += 1
        self.kinds.setdefault(what.split(" and ")[0], []).append(cpu_us)
        if cpu_us > self.cpu[0]:
            self.cpu = (cpu_us, what)
        if whole_us > self.whole:
            self.whole = whole_us


def _step(rig, steps, measure, what_of, deliver=None):
    """One loop turn as main.py's tasks take it: the meter polls, the link
    steps (deliver: the head-end's messages due by now reach the broker
    first). steps records the link step."""
    rig.rt.ms += STEP_MS
    rig.hw.clock.advance(STEP_MS)
    if deliver is not None:
        deliver()
    rig.m.poll()
    u = rig.ota.updater
    before = (u.blocks_written, u.state, u.trial_ready)
    _in_flash[0] = 0
    t0 = time.ticks_us()
    try:
        rig.link.step()
    finally:
        whole = time.ticks_diff(time.ticks_us(), t0)
        if measure:
            gc.collect()     # a GC pass is the collector's hold, not the step's
        steps.add(whole - _in_flash[0], whole, what_of(u, before))


def _what(u, before):
    if before[1] == 2:
        return "verify 4 blocks"
    if before[1] == 4:
        if not before[2]:
            return "trial: hash 4 blocks"
        return "trial: mark valid" if u.state == 0 else "trial: self-test or the floor's save"
    if u.blocks_written > before[0]:
        return "block program" + (" and the chunk's progress record" if u.p.get("o", 1) % 65536 == 0 else "")
    return "erase, record or request"


def run(img, rtt_ms, rate, measure=False):
    """One update of img, manifest to valid. Returns a dict of figures."""
    otakit.SLOT = ota_model.SLOT_SIZE
    rig = Rig()
    rig.m.apply_credit("mqtt", 1, 1, 10_000_000)
    rig.m.confirm()
    rig.hw.world.flow.set_rate_lph(600)
    msg = signed(img.manifest())
    gc.collect()
    idle = gc.mem_alloc()
    rig.offer(msg)
    t_offer = rig.rt.ms
    due = []                    # (ms deliverable, message)
    sig, dl = Steps(), Steps()
    t_first = None
    mem0 = None
    def deliver():
        while due and due[0][0] <= rig.rt.ms:
            rig.b.pending.append((rig.link.t_ota, due.pop(0)[1]))

    try:
        while sig.n + dl.n < 100_000:
            _step(rig, sig if t_first is None else dl, measure, _what, deliver)
            u = rig.ota.updater
            if measure and mem0 is None and u.state == 1 and u.progress() >= 50:
                gc.collect()
                mem0 = gc.mem_alloc() - idle
            for t, p, _, _ in rig.b.published:
                if t == rig.link.t_ota_req:
                    if t_first is None:
                        t_first = rig.rt.ms
                    r = json.loads(p)
                    at = rig.rt.ms + rtt_ms + r["n"] * 1000 // rate
                    for o in range(r["o"], r["o"] + r["n"], otakit.PIECE):
                        k = min(otakit.PIECE, r["o"] + r["n"] - o)
                        due.append((at, b"D" + o.to_bytes(4, "big") + img.read(o, k)))
            del rig.b.published[:]     # the test broker's record: not the meter's RAM
    except Reset:
        pass
    out = {"sig_s": (t_first - t_offer) / 1000, "dl_s": (rig.rt.ms - t_first) / 1000,
           "sig": sig, "dl": dl, "mem": mem0,
           "erases": rig.flash.erases, "programs": rig.flash.block_writes,
           "records": rig.ota.updater.store.writes,
           "otadata": rig.flash.ops - rig.flash.block_writes - rig.flash.erases,
           "emitted": rig.hw.world.flow.emitted, "counted_l": rig.m.volume.ml() // 1000,
           "set_boot_ms": _set_boot[0] / 1000}
    # the reset: the bootloader model starts the new image (NEW -> PENDING_VERIFY),
    # which hashes its own partition, runs the self-test and marks itself valid
    rig.boot()
    rig.hw.world.flow.set_rate_lph(600)
    trial = Steps()
    t0 = rig.rt.ms
    while rig.ota.updater.state != 0 and trial.n < 10_000:
        _step(rig, trial, measure, _what)
    valid = [e for e in rig.ota_events() if e & 0xFF == otakit.codes.OTA_VALID]
    out.update({"trial_s": (rig.rt.ms - t0) / 1000, "trial": trial, "valid": bool(valid),
                "running": rig.running(), "trial_records": rig.ota.updater.store.writes,
                "trial_otadata": rig.flash.ops, "trial_programs": rig.flash.block_writes})
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_600_000
    img = Image(n)
    print("image %d bytes, %d blocks of 4096, %d chunks of 64 KiB" % (
        len(img), (len(img) + 4095) // 4096, (len(img) + 65535) // 65536))
    print("update time on the simulated clock, link steps every %d ms; boot time of the new image"
          " not included" % STEP_MS)
    print("%-24s %8s %9s %8s %9s %7s" % ("link profile", "sig s", "download", "trial s", "total s",
                                         "steps"))
    worst = None
    for name, rtt, rate in PROFILES:
        r = run(img, rtt, rate, measure=worst is None)
        assert r["valid"] and r["running"] == "ota_1", "the update did not end valid"
        if worst is None:
            worst = r
        steps = r["sig"].n + r["dl"].n + r["trial"].n
        print("%-24s %8.1f %9.1f %8.1f %9.1f %7d" % (
            name, r["sig_s"], r["dl_s"], r["trial_s"], r["sig_s"] + r["dl_s"] + r["trial_s"], steps))
    r = worst
    print("flash, download to set_boot: %d block erases and %d block programs (4 KiB), %d progress"
          " records (two-copy CRC file), %d otadata write" % (
              r["erases"], r["programs"], r["records"], r["otadata"]))
    print("flash, first boot to valid: %d block programs, %d progress records, %d otadata writes"
          " (NEW to PENDING_VERIFY at boot, valid)" % (
              r["trial_programs"], r["trial_records"], r["trial_otadata"]))
    print("water: %d pulses emitted, %d counted during the download" % (r["emitted"], r["counted_l"]))
    for phase in ("sig", "dl", "trial"):
        st = r[phase]
        print("longest link step (= meter loop stall), %s: %.2f ms with the host file I/O of flash,"
              " %.2f ms without (%s)" % ({"sig": "signature check", "dl": "download and verify",
                                          "trial": "first boot to valid"}[phase],
                                         st.whole / 1000, st.cpu[0] / 1000, st.cpu[1]))
    kinds = {}
    for phase in ("dl", "trial"):
        for k, v in r[phase].kinds.items():
            kinds.setdefault(k, []).extend(v)
    for k in sorted(kinds):
        v = sorted(kinds[k])
        print("  %-34s steps: median %.2f ms, 99th percentile %.2f ms, n=%d (without flash I/O)" % (
            k, v[len(v) // 2] / 1000, v[len(v) * 99 // 100] / 1000, len(v)))
    print("set_boot, in the step that ends the verify: %.1f ms on this host (the flash model checks"
          " the whole image in it, as esp_ota_set_boot_partition does on the chip: one C call the"
          " loop waits on)" % r["set_boot_ms"])
    cpu = max(r[p].cpu[0] for p in ("sig", "dl", "trial"))
    print("projected on an ESP32: %.0f ms CPU + one flash operation: a 4 KiB erase 45 ms typ."
          " (400 ms max) or a 4 KiB program 6-48 ms (16 pages of 0.4-3 ms)" % (cpu * 25 / 1000))
    print("heap held half-way through the download (after gc): %d bytes more than before the"
          " manifest (block buffer 4096, manifest, progress, link inbox)" % r["mem"])


main()
