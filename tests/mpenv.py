"""Where the MicroPython unix port is and the import path firmware runs with
(firmware/ as the device root, the repo for boards/, build/lib for umqtt).
Shared by the pytest bridge, host tests, benchmarks and tools."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MP_DIR = ROOT / "tests" / "mp"
MICROPYTHON = os.environ.get("MICROPYTHON", str(ROOT / ".venv" / "bin" / "micropython"))
MICROPYPATH = ":".join(
    [".frozen", str(ROOT / "firmware"), str(ROOT), str(MP_DIR), str(ROOT / "build" / "lib")]
)


def mp_env(extra=None):
    env = dict(os.environ, MICROPYPATH=MICROPYPATH)
    env.update(extra or {})
    return env
