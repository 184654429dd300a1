"""Assemble the battery board's ULP pulse counter for deployment.

Runs micropython-esp32-ulp 1.2.0 (build/lib/esp32_ulp, tools/fetch_ulp_asm.py)
in the MicroPython unix port, as it is written to run, on
firmware/ulp/counter.S, and writes the ULP binary (12-byte header, text,
data) that boards/esp32_battery.py loads with esp32.ULP: copy it to the
board as /ulp/counter.ulp. The tests assemble the same source with the same
assembler (tests/mp/ulpkit.py).

usage: python tools/ulp_build.py [out=build/ulp/counter.ulp]
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env

_SCRIPT = """
import sys
sys.modules.setdefault("btree", type("NoBtree", (), {}))
import esp32_ulp
b = esp32_ulp.src_to_binary(open("firmware/ulp/counter.S").read())
open(%r, "wb").write(b)
"""


def build(out: Path) -> Path:
    if not (ROOT / "build" / "lib" / "esp32_ulp" / "opcodes.py").exists():
        sys.exit("ulp_build: run tools/fetch_ulp_asm.py build/lib first")
    out = out.resolve()          # the assembler runs in ROOT: a relative path is the caller's
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([MICROPYTHON, "-c", _SCRIPT % str(out)], cwd=ROOT, env=mp_env(), check=True,
                   capture_output=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="ulp_build.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "build" / "ulp" / "counter.ulp"),
                    help="the ULP binary to write (build/ulp/counter.ulp)")
    path = build(Path(ap.parse_args().out))
    print("ulp_build:", path, path.stat().st_size, "bytes")
