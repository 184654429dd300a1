"""Assemble the battery board's ULP pulse counter for deployment.

Runs micropython-esp32-ulp 1.2.0 (build/lib/esp32_ulp, tools/fetch_ulp_asm.py)
in the MicroPython unix port, as it is written to run, on
firmware/ulp/counter.S, and writes the ULP binary (12-byte header, text,
data) that boards/esp32_battery.py loads with esp32.ULP: `flash.py deploy
--board esp32_battery` builds it with this and copies it to the board as
/ulp/counter.ulp. The tests assemble the same source with the same
assembler (tests/mp/ulpkit.py).

usage: python tools/ulp_build.py [out=build/ulp/counter.ulp]
"""

import argparse
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env

ASM_DIR = ROOT / "build" / "lib"    # where tools/fetch_ulp_asm.py unpacks the assembler
# CONFIG_ULP_COPROC_RESERVE_MEM of MicroPython's ESP32 build: esp32.ULP's
# load_binary refuses a program larger than this (boards/unix/ulp_emu.py)
RESERVE_BYTES = 2040
FETCH = "python tools/fetch_ulp_asm.py build/lib"

_SCRIPT = """
import sys
sys.modules.setdefault("btree", type("NoBtree", (), {}))
import esp32_ulp
b = esp32_ulp.src_to_binary(open("firmware/ulp/counter.S").read())
open(%r, "wb").write(b)
"""


class UlpBuildError(Exception):
    """The program could not be assembled; the message says what to run."""


def _layout():
    # the CPU's view of the program's words (firmware/metering/ulpcount.py),
    # plain Python apart from MicroPython's const()
    import builtins
    if not hasattr(builtins, "const"):
        builtins.const = lambda x: x  # type: ignore[attr-defined]
    sys.path.append(str(ROOT / "firmware"))
    from metering import ulpcount
    return ulpcount


def check(binary: bytes) -> str | None:
    """Why esp32.ULP could not load this binary, or the board could not
    count with it; None for the assembled counter.S."""
    if len(binary) < 12:
        return f"{len(binary)} bytes, shorter than the 12-byte ULP header"
    magic, off, text, data, bss = struct.unpack("<4sHHHH", binary[:12])
    if magic != b"ulp\0":
        return f"no ULP header (magic {magic!r}, not b'ulp\\x00')"
    if off != 12 or len(binary) != 12 + text + data:
        return f"the header says {text} + {data} bytes of text and data, the file has {len(binary) - 12}"
    if text + data + bss > RESERVE_BYTES:
        return f"{text + data + bss} bytes, more than the {RESERVE_BYTES} esp32.ULP reserves"
    u = _layout()
    if text < u.ENTRY + 4 or struct.unpack_from("<I", binary, 12 + 4 * u.W_MAGIC)[0] & 0xFFFF != u.MAGIC:
        return f"not the counter program (no magic word at word {u.W_MAGIC}, or no code at byte {u.ENTRY})"
    return None


def build(out: Path) -> Path:
    if not (ASM_DIR / "esp32_ulp" / "opcodes.py").exists():
        raise UlpBuildError(f"the ULP assembler is not in {ASM_DIR}: run `{FETCH}` first")
    out = out.resolve()          # the assembler runs in ROOT: a relative path is the caller's
    out.parent.mkdir(parents=True, exist_ok=True)
    env = mp_env()
    env["MICROPYPATH"] = ":".join([".frozen", str(ASM_DIR), env["MICROPYPATH"]])
    p = subprocess.run([MICROPYTHON, "-c", _SCRIPT % str(out)], cwd=ROOT, env=env, check=False,
                       capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stdout + p.stderr).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        raise UlpBuildError(f"assembling firmware/ulp/counter.S failed: {last[0]} "
                            f"(a damaged assembler? run `{FETCH}` again)")
    problem = check(out.read_bytes())
    if problem:
        raise UlpBuildError(f"the assembled {out} is unusable: {problem}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="ulp_build.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "build" / "ulp" / "counter.ulp"),
                    help="the ULP binary to write (build/ulp/counter.ulp)")
    try:
        path = build(Path(ap.parse_args().out))
    except UlpBuildError as e:
        sys.exit(f"ulp_build: {e}")
    print("ulp_build:", path, path.stat().st_size, "bytes")
