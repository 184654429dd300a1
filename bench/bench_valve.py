# Valve figures, measured on the simulated board's valve models (MicroPython
# unix port), for each valve type:
#
#   .venv/bin/python bench/bench_valve.py      (re-runs itself in MicroPython)
#   .venv/bin/micropython bench/bench_valve.py (from the repository root)
#
# Scenario: credit worth exactly 100 L (35 000 units at 350 000 units/m3),
# flow at Q3 = 2.5 m3/h, K = 1 pulse/L, the meter polled every poll_ms of
# virtual time as the firmware loop does, no friendly period. Ten runs per
# valve type, the flow starting at a different phase of the poll grid (0,
# 100, ... 900 ms), because the overshoot depends on where the crossing falls.
#
#   crossing   the virtual instant the delivered water reaches 100 L
#   decision   the poll in which the credit policy decides to close
#   coil       the first rise of the bridge's close input
#   seated     the model reports the valve seated (the flow stops here)
#
# The models pass full flow until seated: for the motorised ball valve, whose
# bore narrows during its travel, that is an upper bound. Times are virtual
# (the models' and the pulse's), not ESP32 CPU time.
import sys

if sys.implementation.name != "micropython":
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tests"))
    from mpenv import MICROPYTHON, mp_env
    sys.exit(subprocess.run([MICROPYTHON, os.path.abspath(__file__)], check=False, cwd=root,
                            env=mp_env()).returncode)

for p in ("firmware", ".", "tests/mp"):
    if p not in sys.path:
        sys.path.append(p)

import codes
from simkit import make_meter

Q3_LPH = 2500
CREDIT = 35_000          # 100 L at 350 000 units/m3
LITRES = 100
MODELS = {"latching": "50 ms coil pulse, 80 ms plunger travel",
          "motor": "5 s end-to-end travel, stopped by the limit switch IRQ"}


def one(kind, phase_ms):
    m, hw = make_meter(board_opts={"valve": kind}, reopen="auto",
                       friendly_hours=[0, 0], friendly_days=[], burst_lph=0)
    m.apply_credit("bench", 1, 1, CREDIT)
    poll = m.cfg["poll_ms"]
    for _ in range(10_000 // poll):                # let the valve finish opening
        hw.clock.advance(poll)
        m.poll()
    v, flow = hw.world.valve, hw.world.flow
    assert v.state == 1
    seen = {}
    # credit-exhausted is logged in the deciding poll just before the valve call
    m.log.listeners.append(
        lambda ev: seen.setdefault("decision", hw.clock.now_us()) if ev[2] == codes.EV_CREDIT_EXHAUSTED else None)
    hw.clock.advance(phase_ms)
    t_start = hw.clock.now_us()
    flow.set_rate_lph(Q3_LPH)
    crossing = t_start + LITRES * 3_600_000_000 // Q3_LPH
    n = 0
    while v.closed_at_us is None or v.closed_at_us < t_start:
        hw.clock.advance(poll - (phase_ms if n == 0 else 0))
        m.poll()
        n += 1
        assert n < 1000
    coil = v.rises["close"][-1]
    decision = seen["decision"]
    hw.clock.advance(5_000)
    over = flow.delivered_ml() - LITRES * 1000
    return {
        "crossing_to_decision_ms": (decision - crossing) / 1000,
        "decision_to_coil_ms": (coil - decision) / 1000,
        "coil_to_seated_ms": (v.closed_at_us - coil) / 1000,
        "crossing_to_stop_ms": (v.closed_at_us - crossing) / 1000,
        "after_credit_ml": over,
    }


def stats(rows, key):
    xs = [r[key] for r in rows]
    return min(xs), sum(xs) / len(xs), max(xs)


def main():
    print("valve bench: credit for %d L, flow %d L/h (Q3), K = 1 pulse/L, poll 1000 ms" % (LITRES, Q3_LPH))
    print("10 runs per valve type, flow start phase 0..900 ms; min / mean / max")
    for kind in ("latching", "motor"):
        rows = [one(kind, ph) for ph in range(0, 1000, 100)]
        print()
        print("== %s valve (%s)" % (kind, MODELS[kind]))
        for key, label in (("decision_to_coil_ms", "close decision -> bridge on   ms"),
                           ("crossing_to_decision_ms", "credit out -> close decision  ms"),
                           ("coil_to_seated_ms", "bridge on -> seated           ms"),
                           ("crossing_to_stop_ms", "credit out -> water stops     ms"),
                           ("after_credit_ml", "water after credit ran out    mL")):
            lo, mean, hi = stats(rows, key)
            print("  %s %9.1f %9.1f %9.1f" % (label, lo, mean, hi))


main()
