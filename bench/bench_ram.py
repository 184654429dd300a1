"""Heap taken by the firmware's modules once imported (issue 7's RAM budget).

    .venv/bin/python bench/bench_ram.py

Measured in the unix port (64-bit: objects and pointers are about twice
their ESP32 size), from source. An ESP32-WROOM-32 gives MicroPython about
110 kB of heap; a frozen build (tools/manifest.py) keeps bytecode in flash.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env  # noqa: E402


def main():
    p = subprocess.run([MICROPYTHON, str(ROOT / "bench" / "mp_ram.py")], cwd=str(ROOT),
                       env=mp_env(), capture_output=True, text=True, timeout=120, check=False)
    if p.returncode != 0:
        sys.exit("bench failed:\n" + p.stdout + p.stderr)
    rows = [line.split() for line in p.stdout.split("\n") if line.strip()]
    total = sum(int(b) for _, b in rows)
    groups = {}
    for name, b in rows:
        top = name.split(".")[0] if "." in name else name
        groups[top] = groups.get(top, 0) + int(b)
    print("heap after import, unix port 64-bit, from source: %d bytes in all" % total)
    for top, b in sorted(groups.items(), key=lambda kv: -kv[1]):
        print("  %-10s %7d bytes  %4.1f %%" % (top, b, 100 * b / total))


if __name__ == "__main__":
    main()
