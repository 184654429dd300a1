# Firmware update cost on a battery meter (firmware/ota/battery.py,
# docs/OTA.md §9), MicroPython unix port:
#
#   .venv/bin/micropython bench/bench_ota_battery.py [IMAGE_BYTES]     (from the repository root)
#
# The simulated battery board (boards/unix_battery.py) with the modelled
# OTA flash (1.625 MiB slots) takes an image of IMAGE_BYTES (default
# 1,600,000: a frozen ESP32 image, docs/BUILD.md) in its reporting windows
# (daily, the default), on the simulated clock, from the power-on window
# that brings the manifest to `valid` on the new image, water running all
# along. The head-end answers each block request at the profile's rate
# (tests/mp/batotakit.py). Printed per profile: the days and windows it
# took, the radio's on-time (in all, and on the worst day), its charge at
# the cell model's radio current (power.RADIO_MA) against the cell's
# usable charge, the flash writes (4 KiB erases and programs, progress
# records, otadata entries), and whether every pulse was billed.
import sys

for p in ("firmware", ".", "tests/mp", "build/lib"):
    if p not in sys.path:
        sys.path.append(p)

import codes
import otakit
import power
from boards.unix import ota_model
from batotakit import DAY, Rig
from meter import WHY_NONE
from ota import battery as ob
from ota import updater as up
from storage.state import StateStore

PROFILES = (("LAN broker", 5_000_000), ("home Wi-Fi", 500_000), ("weak Wi-Fi", 40_000),
            ("GPRS-class", 5_000))
# ESP32 time the host's virtual clock does not see (docs/OTA.md §7, §8):
# a 4 KiB sector erase 45 ms typical, a program of 16 pages ~11 ms
# (Winbond W25Q32JV), a signature slice 25-53 ms of CPU, a whole verify at
# a window that resumes 1.6-3.4 s (bench/bench_sig.py): the radio stays on
ERASE_S = 0.045
PROGRAM_S = 0.011
SLICE_S = 0.053
VERIFY_S = 3.4
SLICES = 64
_records = [0]
_flash = [0, 0, 0]       # erases, programs, otadata entries written, across the boots (each boot has its own OtaFlash)
_save = StateStore.save
_ioctl = ota_model.SimPartition.ioctl
_write = ota_model.SimPartition.writeblocks


def _counted_ioctl(self, cmd, arg):
    if cmd == 6:
        _flash[0] += 1
    return _ioctl(self, cmd, arg)


def _counted_write(self, block, buf, offset=None):
    _flash[1] += 1
    return _write(self, block, buf, offset)


_entry = ota_model.OtaFlash._write_entry


def _counted_entry(self, i, seq, state):
    _flash[2] += 1
    return _entry(self, i, seq, state)


ota_model.OtaFlash._write_entry = _counted_entry
ota_model.SimPartition.ioctl = _counted_ioctl
ota_model.SimPartition.writeblocks = _counted_write


def _counted(self, data):
    if self._base.endswith("/ota"):
        _records[0] += 1
    return _save(self, data)


StateStore.save = _counted


def run(img, rate):
    r = Rig(slot=0x1A0000)
    m = r.m
    m.balance = 100_000 * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    r.he.image = img
    r.he.rate = rate
    r.he.retained = otakit.signed(img.manifest())
    r.plant.flow.set_rate_lph(20)
    t0 = r.plant.clock.time()
    used0 = m.cell.used
    _records[0] = 0
    _flash[0] = _flash[1] = _flash[2] = 0
    days = 0
    while True:
        r.wake()
        days = (r.plant.clock.time() - t0) // DAY
        if r.m.fw_floor == 2 or days > 60:
            break
    r.plant.flow.set_rate_lph(0)
    r.wake()
    by_day = {}
    for t, ms in r.radio:
        by_day[(t - t0) // DAY] = by_day.get((t - t0) // DAY, 0) + ms
    radio = sum(ms for _, ms in r.radio)
    resumes = len(r.ota_events(codes.OTA_RESUMED))
    chip_s = _flash[0] * ERASE_S + _flash[1] * PROGRAM_S + SLICES * SLICE_S + resumes * VERIFY_S
    return {
        "chip_s": radio / 1000 + chip_s,
        "valid": r.m.fw_floor == 2 and r.state() == up.IDLE,
        "days": days + 1,
        "windows": len(r.radio),
        "radio_s": radio / 1000,
        "worst_day_s": max(by_day.values()) / 1000,
        "radio_as": radio * power.RADIO_MA / 1_000_000,
        "cell_as": (r.m.cell.used - used0) / 1_000_000,
        "usable_pct": (r.m.cell.used - used0) * 100 / power.USABLE_UAS,
        "erases": _flash[0], "programs": _flash[1], "records": _records[0],
        "otadata": _flash[2],
        "billed": abs(r.m.volume.ml() - r.plant.flow.delivered_ml()) < 1000,
    }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_600_000
    img = otakit.FileImage(n, "/tmp/bench-ota-battery.img")
    print("battery OTA: image %d bytes, %d blocks, %d chunks of 64 KiB; allowance %d s/day, step %d ms"
          % (len(img), (len(img) + 4095) // 4096, (len(img) + 65535) // 65536,
             ob.RADIO_DAY_MS // 1000, ob.STEP_MS))
    print("%-11s %8s %4s %7s %7s %9s %8s %8s %8s %7s %6s %6s %4s %6s %6s"
          % ("profile", "rate B/s", "days", "windows", "radio s", "worst day", "ESP32 s", "radio As",
             "wakes As", "% cell", "erases", "progs", "recs", "otadat", "billed"))
    for name, rate in PROFILES:
        f = run(img, rate)
        print("%-11s %8d %4d %7d %7.1f %9.1f %8.1f %8.2f %8.2f %7.3f %6d %6d %4d %6d %6s%s"
              % (name, rate, f["days"], f["windows"], f["radio_s"], f["worst_day_s"], f["chip_s"],
                 f["radio_as"], f["cell_as"], f["usable_pct"], f["erases"], f["programs"],
                 f["records"], f["otadata"], f["billed"], "" if f["valid"] else "  NOT VALID"))
    print("ESP32 s: the radio time plus what the chip adds that the host's clock does not see"
          " (erases x %.3f s, programs x %.3f s, %d signature slices x %.3f s, a whole verify"
          " of %.1f s at each window that resumes): the radio is on meanwhile"
          % (ERASE_S, PROGRAM_S, SLICES, SLICE_S, VERIFY_S))


main()
