"""Service benchmarks: RAM at the REPL prompt while the meter meters (app
from source and from .mpy), and the time to deploy the whole app over a
pseudo-terminal with tools/flash.py.

    .venv/bin/python bench/bench_service.py
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "host"))

from ptymeter import PtyMeter, number, write_device

# live heap at the prompt: gc.collect() then gc.mem_alloc(). (micropython.mem_peak()
# is no high-water mark: it counts allocations minus explicit frees, never the
# collector's, and grows without bound.) The high-water mark that matters, the
# smallest heap that runs a day, is bench/bench_ram.py --bisect.
RAM = ("import gc; gc.collect(); "
       "print('alloc=%d' % gc.mem_alloc()); "
       "print('ticks=%d' % _session.ticker.ticks); print('ml=%d' % _session.meter.volume.ml())")
SAMPLES = 5
FLOW = ("m=_session.meter; m.apply_credit('bench', 1, 1, 50_000_000); m.confirm(); "
        "_session.hw.world.flow.set_rate_lph(3600)")


def ram_at_prompt(root, script, app_dirs):
    """Live heap while water flows: the last and the largest of SAMPLES."""
    with PtyMeter(root, script=script, app_dirs=app_dirs) as pm:
        pm.wait_ready()
        pm.exec(FLOW)
        time.sleep(1.0)
        outs = []
        for _ in range(SAMPLES):
            outs.append(pm.exec(RAM))
            time.sleep(0.3)
    assert number(outs[-1], "ml") > number(outs[0], "ml"), "not metering"
    return number(outs[-1], "alloc"), max(number(o, "alloc") for o in outs)


def main():
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "src"
        write_device(src, speed=20)
        a_src, p_src = ram_at_prompt(src, "main", None)

        dev = d / "dev"
        dev.mkdir()
        with PtyMeter(dev, script=None) as pm:
            pm.wait_ready()
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, str(ROOT / "tools" / "flash.py"), "deploy",
                                "--port", pm.tty, "--board", "unix", "--opt", "speed=20",
                                "--build-dir", str(d / "build")],
                               capture_output=True, text=True, timeout=300, check=False)
            t_deploy = time.monotonic() - t0
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            return 1
        n_files = len(list((d / "build").rglob("*.*"))) - 0
        size = sum(f.stat().st_size for f in (d / "build").rglob("*") if f.is_file())
        a_mpy, p_mpy = ram_at_prompt(dev, str(dev / "main.py"), [dev, dev / "lib"])

    print("RAM in use at the REPL prompt while metering (gc.mem_alloc after gc.collect,")
    print("unix port, meter + MQTT link + service session, water flowing):")
    print(f"  app from source (.py):   {a_src:8d} bytes   largest of {SAMPLES} samples {p_src:8d}")
    print(f"  app from .mpy:           {a_mpy:8d} bytes   largest of {SAMPLES} samples {p_mpy:8d}")
    print("  (64-bit unix port: pointers and object headers are twice the ESP32's size)")
    print(f"deploy of the whole app over a pty: {t_deploy:.1f} s "
          f"({n_files} files, {size // 1024} kB, mpy-cross + mpremote cp + SHA-256 verify)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
