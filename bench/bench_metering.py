"""Metering benchmarks (issue 3). Runs the firmware in the unix port and
prints its figures; timings are ratios measured in the same run.

    .venv/bin/python bench/bench_metering.py
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env  # noqa: E402

# Flash budget assumptions (docs/METERING.md): LittleFS on a 2 MiB data
# partition of 4 KiB blocks, ~3 block erases per state save (file data,
# directory pair on rename), 100 000 erase cycles per block, wear levelled.
BLOCKS = 512
ERASES_PER_SAVE = 3
CYCLES = 100_000


def main():
    p = subprocess.run([MICROPYTHON, str(ROOT / "bench" / "mp_metering.py")], cwd=str(ROOT),
                       env=mp_env(), capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit("bench failed:\n" + p.stdout + p.stderr)
    f = json.loads(p.stdout.strip().splitlines()[-1])
    print("pulse handler (IRQ path, debounce + direction): %.2f x a bare `n += 1` handler "
          "(%d ns vs %d ns on this host), %.1f bytes allocated per pulse"
          % (f["pulse_ratio_to_bare"], f["handler_ns"], f["bare_ns"], f["bytes_per_pulse"]))
    print("meter poll (pulses -> volume -> 3-block tariff + standing -> policy -> detection): "
          "%.1f us, %.0f x a bare handler call" % (f["poll_us"], f["poll_ratio_to_bare"]))
    c = f["counter"]
    print("credit-exhausting pulse -> close coil pulse, simulated, %d phases: mean %d ms, max %d ms "
          "(poll period 1000 ms)" % (c["runs"], c["latency_ms_mean"], c["latency_ms_max"]))
    print("water after credit ran out at Q3 2.5 m3/h, latching valve (travel %d ms): "
          "mean %.3f L, max %.3f L" % (c["travel_ms"], c["overshoot_l_mean"], c["overshoot_l_max"]))
    for lph in (500, 2500):
        w = f["writes_per_m3_at_%d_lph" % lph]
        print("state writes per m3 at %d L/h: %d" % (lph, w))
    # households: typical 0.15 m3/day at ~500 L/h, heavy 2 m3/day
    w = f["writes_per_m3_at_500_lph"]
    for label, m3 in (("typical (0.15 m3/day)", 0.15), ("heavy (2 m3/day)", 2.0)):
        per_day = w * m3 + 24          # assumed: + ~24 saves/day for credits, events, valve moves
        years = BLOCKS * CYCLES / (per_day * ERASES_PER_SAVE) / 365
        print("flash: %s -> %.0f state writes/day, projected life %.0f years" % (label, per_day, years))


if __name__ == "__main__":
    main()
