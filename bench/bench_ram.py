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


def sim_world(mp):
    """Heap at boot taken by the simulator's own parts, not on a device."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([mp, str(ROOT / "bench" / "mp_simworld.py"), d], cwd=str(ROOT),
                           env=mp_env(), capture_output=True, text=True, timeout=120, check=False)
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
        "ok": p.returncode == 0 and "MemoryError" not in out and "== summary" in out,
        "memory_error": "MemoryError" in out,
        "boot": live[0] if live else 0,
        "median": int(statistics.median(live)) if live else 0,
        "max": max(live) if live else 0,
        "samples": len(live),
        "max_block": max(blk) * bpb if blk else 0,
        "out": out,
    }


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--micropython", default=MICROPYTHON)
    ap.add_argument("--heap", default="96K", help="-X heapsize of the day run")
    ap.add_argument("--no-bisect", action="store_true", help="skip the smallest-heap search")
    a = ap.parse_args(argv)
    mp = a.micropython
    bits = mp_bits(mp)
    rows = import_figures(mp)
    total = sum(b for _, b in rows)
    print(f"MicroPython: {mp} ({bits})")
    print(f"heap after importing every firmware module: {total} bytes")
    groups: dict = {}
    for name, b in rows:
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + b
    for top, b in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {top:<10s} {b:7d} bytes  {100 * b / max(total, 1):4.1f} %")
    world = sim_world(mp)
    d = day(mp, a.heap)
    print(f"simulated day at -X heapsize={a.heap}: "
          + ("ran to its end, no MemoryError" if d["ok"] else "FAILED"
             + (" (MemoryError)" if d["memory_error"] else "")))
    print(f"  live heap after boot, link up     {d['boot']:7d} bytes")
    print(f"  live heap, median of {d['samples']:5d} samples {d['median']:7d} bytes")
    print(f"  live heap, largest sample         {d['max']:7d} bytes")
    print(f"  largest block alive at a sample   {d['max_block']:7d} bytes")
    print(f"  of these, the simulator's world   {world:7d} bytes (not on a device)")
    if not d["ok"]:
        tail = [ln for ln in d["out"].splitlines() if not ln.startswith(("[ram]", " No.", "GC:", "stack:", "mem:"))]
        print("\n".join(tail[-15:]))
    if not a.no_bisect:
        k = smallest_heap(mp, 16, 256)
        print(f"smallest -X heapsize that runs the day clean: {k}K" if k else
              "the day does not run clean even at 256K")
    return 0 if d["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
