"""Fetch umqtt.simple for the unix port from the package registry.

PyPI carries micropython-umqtt.simple 1.3.4 only as an sdist without a
setup.py, so `pip download` refuses to finish; with --no-clean it leaves the
unpacked source behind, which is all we need. The file is checked against a
pinned SHA-256 and copied to <dest>/umqtt/simple.py (not committed: it is
micropython-lib's code, fetched by name and version).

usage: python tools/fetch_umqtt.py build/lib
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "micropython-umqtt.simple==1.3.4"
SHA256 = "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5"


def fetch(dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"TMPDIR": tmp, "PATH": "/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        import os

        env = dict(os.environ, **env)
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--no-clean", "-d", str(Path(tmp) / "dl"), PACKAGE],
            env=env, capture_output=True, text=True, check=False,
        )
        found = [p for p in Path(tmp).rglob("umqtt/simple.py")]
        if not found:
            said = "\n".join(ln for ln in pip.stderr.splitlines() if " is ignored: " not in ln)
            sys.exit(f"fetch_umqtt: {PACKAGE} did not unpack; is PyPI reachable? pip said:\n{said[-2000:]}")
        src = found[0]
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if digest != SHA256:
            sys.exit(f"fetch_umqtt: {src} has SHA-256 {digest}, expected {SHA256}")
        out = dest / "umqtt" / "simple.py"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="fetch_umqtt.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", nargs="?", default="build/lib", help="the unix port's library folder (build/lib)")
    path = fetch(Path(ap.parse_args().dest))
    print("fetch_umqtt: umqtt.simple 1.3.4 ->", path)
