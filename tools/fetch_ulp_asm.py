"""Fetch the ULP assembler (micropython-esp32-ulp 1.2.0) for the unix port.

The MicroPython organisation's assembler for the ESP32 ULP FSM. It is a
MicroPython package: PyPI carries it as an sdist without a setup.py, so pip
cannot install it; `pip download --no-clean` leaves the unpacked source
behind, which is all we need (as tools/fetch_umqtt.py does). Its files are
checked against a pinned SHA-256 (over the sorted file names and contents)
and copied to <dest>/esp32_ulp, where the unix port imports it. Not
committed: it is the MicroPython organisation's code, fetched by name and
version. Used by tools/ulp_build.py (deploy) and tests/mp/ulpkit.py (tests).

usage: python tools/fetch_ulp_asm.py build/lib
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "micropython-esp32-ulp==1.2.0"
SHA256 = "007e769d2ab1c2853986f43766a2fb4555c9e6b2b1a5690839afd7d399622595"


def tree_digest(pkg: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(pkg.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def fetch(dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TMPDIR=tmp, PIP_DISABLE_PIP_VERSION_CHECK="1")
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--no-clean", "-d", str(Path(tmp) / "dl"), PACKAGE],
            env=env, capture_output=True, text=True, check=False,
        )
        found = [p.parent for p in Path(tmp).rglob("esp32_ulp/opcodes.py")]
        if not found:
            said = "\n".join(ln for ln in pip.stderr.splitlines() if " is ignored: " not in ln)
            sys.exit(f"fetch_ulp_asm: {PACKAGE} did not unpack; is PyPI reachable? pip said:\n{said[-2000:]}")
        digest = tree_digest(found[0])
        if digest != SHA256:
            sys.exit(f"fetch_ulp_asm: esp32_ulp has SHA-256 {digest}, expected {SHA256}")
        out = dest / "esp32_ulp"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(found[0], out)
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="fetch_ulp_asm.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", nargs="?", default="build/lib", help="the unix port's library folder (build/lib)")
    path = fetch(Path(ap.parse_args().dest))
    print("fetch_ulp_asm:", PACKAGE, "->", path)
