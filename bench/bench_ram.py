"""RAM of the meter firmware: heap after import, and through a simulated day.

    .venv/bin/python bench/bench_ram.py                      # the pinned unix port (64-bit)
    .venv/bin/python bench/bench_ram.py --micropython BIN    # e.g. the 32-bit frozen build
    make ram32 MPY_SRC=/path/to/micropython                  # builds that, then runs this

Figures:
  import   heap taken by importing each firmware module (bench/mp_ram.py)
  day      `make sim`'s day scenario (tools/sim.py: real broker, MQTT link up,
           cards, outage, top-ups) with the event log filled to 8 lines short
           of its compaction limit at boot, at -X heapsize=--heap. The live heap
           (gc.collect then gc.mem_alloc) is sampled at the meter's yield
           points (bench/mp_ramprobe.py): after boot, median, maximum; and the
           largest block alive at a sample ("max blk sz" of mem_info).
  smallest the smallest -X heapsize (1 kB steps, bisection) at which the day runs
           to its end with no MemoryError anywhere. This is the honest peak:
           it includes transient allocations and fragmentation, which the
           samples cannot see.
The day figures include the simulator's own objects (the water, card and valve
models, the scenario script, simrun.py): "sim world" gives their share at boot.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env


def import_figures(mp):
    p = subprocess.run([mp, str(ROOT / "bench" / "mp_ram.py")], cwd=str(ROOT),
                       env=mp_env(), capture_output=True, text=True, timeout=120, check=False)
    if p.returncode != 0:
        sys.exit("bench failed:\n" + p.stdout + p.stderr)
    return [(name, int(b)) for name, b in (ln.split() for ln in p.stdout.split("\n") if ln.strip())]


def sim_world(mp, env=None):
    """Heap at boot taken by the simulator's own parts, not on a device."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([mp, str(ROOT / "bench" / "mp_simworld.py"), d], cwd=str(ROOT),
                           env=mp_env(env), capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r"sim=(\d+)", p.stdout)
    if not m:
        sys.exit("mp_simworld failed:\n" + p.stdout + p.stderr)
    return int(m.group(1))


DAY_S = 10800      # the day scenario's length in simulated seconds (boards/unix/scenarios.py)


def day(mp, heap, speed=300, extra=(), env=None):
    """One simulated day; returns its figures and whether it ran clean."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "sim.py"), "day",
                              "--micropython", mp, "--heap", heap, "--ram-probe", "--speed", str(speed),
                              "--state", str(Path(d) / "s"), *extra],
                             cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, env=dict(os.environ, **(env or {})))
        try:
            out, _ = p.communicate(timeout=DAY_S / speed * 4 + 60)
        except subprocess.TimeoutExpired:      # the broker and the meter go with it
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            out += "\n[bench] TIMEOUT"
    live = [int(x) for x in re.findall(r"^\[ram\] live=(\d+)", out, re.MULTILINE)]
    blk = [int(x) for x in re.findall(r"max blk sz: (\d+)", out)]
    bpb = 16 if "32bit" in mp_bits(mp) else 32          # bytes per GC block
    return {
        "ok": (p.returncode == 0 and "MemoryError" not in out and "== summary" in out
               and "[ram] events lost=0" in out),
        "memory_error": "MemoryError" in out or "[ram] events lost=0" not in out,
        "boot": live[0] if live else 0,
        "median": int(statistics.median(live)) if live else 0,
        "max": max(live) if live else 0,
        "samples": len(live),
        "app": (re.findall(r"^\[ram\] app=(\S+)", out, re.MULTILINE) or [""])[0],
        "romfs": int(re.search(r"\[ram\] romfs=(\d+)", out).group(1)) if "[ram] romfs=" in out else 0,
        "max_block": max(blk) * bpb if blk else 0,
        "out": out,
    }


def romfs_image(dest):
    """The app (firmware/, boards/, umqtt.simple) as a ROMFS image of .mpy
    files (mpremote romfs build), for bench/mp_ramprobe.py to mount: the
    nearest the pinned unix port comes to frozen modules. Returns its path."""
    dest = Path(dest)
    app = dest / "app"
    for src, to in ((ROOT / "firmware", app), (ROOT / "boards", app / "boards"),
                    (ROOT / "build" / "lib" / "umqtt", app / "umqtt")):
        for f in src.rglob("*.py"):
            out = to / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
    img = dest / "app.romfs"
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "mpremote"), "romfs", "-o", str(img), "build", str(app)],
                       capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0 or not img.is_file():
        raise RuntimeError("mpremote romfs build failed:\n" + p.stdout + p.stderr)
    return img


_BITS = {}


def mp_bits(mp):
    if mp not in _BITS:
        p = subprocess.run([mp, "-c", "import sys; print('64bit' if sys.maxsize > 2**32 else '32bit')"],
                           capture_output=True, text=True, timeout=30, check=False)
        _BITS[mp] = p.stdout.strip()
    return _BITS[mp]


def smallest_heap(mp, lo_k, hi_k, speed=300, env=None):
    """Smallest -X heapsize in kB (1 kB steps) that runs the day clean; assumes
    lo_k fails and hi_k passes (checked)."""
    if not day(mp, f"{hi_k}K", speed, env=env)["ok"]:
        return None
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        if day(mp, f"{mid}K", speed, env=env)["ok"]:
            hi_k = mid
        else:
            lo_k = mid
    return hi_k


def _report(d, img):
    """The live-heap figures of one day, without `img` bytes (a ROMFS image)."""
    for key, label in (("boot", "live heap after boot, link up    "),
                       ("median", f"live heap, median of {d['samples']:4d} samples"),
                       ("max", "live heap, largest sample        ")):
        print(f"  {label} {d[key] - img:7d} bytes")
    if not img:           # with a ROMFS image, the image itself is the largest block
        print(f"  largest block alive at a sample   {d['max_block']:7d} bytes")


# The heap a day must run in, per build, as the project documents it: the
# 32-bit frozen build's target (README "Figures", docs/BUILD.md) and the
# suite's ROMFS budget (tests/host/test_ram_budget.py BUDGET_K). The 64-bit
# port with the app from source has no RAM claim: only that a day runs.
TARGET_32BIT_K = 96
ROOMY_K = 2048


def limit_k(bits, romfs):
    """The documented heap (kB) this build must run the day in."""
    if bits == "32bit":
        return TARGET_32BIT_K
    return 300 if romfs else ROOMY_K


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--micropython", default=MICROPYTHON)
    ap.add_argument("--heap", default="96K", help="-X heapsize of the day run (kB, e.g. 96K)")
    ap.add_argument("--romfs", action="store_true",
                    help="import the app from a ROMFS image of .mpy (as tests/host/test_ram_budget.py); "
                         "heaps are given and reported without the image's bytes")
    ap.add_argument("--bisect", action="store_true",
                    help="also search the smallest heap that runs the day (some ten days, minutes)")
    a = ap.parse_args(argv)
    mp = a.micropython
    rows = import_figures(mp)
    total = sum(b for _, b in rows)
    print(f"MicroPython: {mp} ({mp_bits(mp)})")
    print(f"heap after importing every firmware module (frozen where the port has them): {total} bytes")
    groups: dict = {}
    for name, b in rows:
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + b
    for top, b in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {top:<10s} {b:7d} bytes  {100 * b / max(total, 1):4.1f} %")
    with tempfile.TemporaryDirectory() as tmp:
        env, img_k = {}, 0
        if a.romfs:
            img = romfs_image(tmp)
            env = {"RAMPROBE_ROMFS": str(img)}
            img_k = (img.stat().st_size + 1023) // 1024
            print(f"app from a ROMFS image of {img.stat().st_size} bytes (not counted below)")
        world = sim_world(mp, env)
        want_k = int(a.heap.rstrip("Kk"))
        d = day(mp, f"{want_k + img_k}K", env=env)
        limit = limit_k(mp_bits(mp), a.romfs)
        why = " (MemoryError, or events lost)" if d["memory_error"] else ""
        # exit status 1 only for a regression: the day failing in a heap the
        # project says it runs in; below that it is a figure, said as such
        rc = 0
        if d["ok"]:
            print(f"simulated day at -X heapsize={want_k}K: ran to its end, no MemoryError")
        elif want_k >= limit:
            rc = 1
            print(f"simulated day at -X heapsize={want_k}K: FAILED{why}: a regression, this "
                  f"build's documented limit is {limit}K")
        else:
            print(f"simulated day at -X heapsize={want_k}K: does not fit{why}; not a regression: "
                  f"this build ({mp_bits(mp)}{', ROMFS' if a.romfs else ', app from source'}) "
                  f"is documented to need up to {limit}K")
        if not d["ok"]:
            # figures from a heap with room (the app from source on the 64-bit
            # port does not even boot in 512K: compiling card/session.py fails)
            d = day(mp, f"{ROOMY_K + img_k}K", env=env)
            if not d["ok"]:
                rc = 1
            print(f"figures from a day at -X heapsize={ROOMY_K}K:" if d["ok"] else
                  f"FAILED: the day fails even at {ROOMY_K}K; figures of that run:")
        _report(d, d["romfs"])
        print(f"  the simulator's own objects at boot {world:5d} bytes of these (not on a device)")
        if a.bisect:
            k = smallest_heap(mp, 16 + img_k, 512 + img_k, env=env)
            print(f"smallest -X heapsize that runs the day clean: {k - img_k}K" if k else
                  "the day does not run clean even at 512K")
            if k and k - img_k > limit:
                rc = 1
                print(f"FAILED: above this build's documented limit of {limit}K")
    return rc


if __name__ == "__main__":
    sys.exit(main())
