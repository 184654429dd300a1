# Reference run for tests/host/test_billing_reference.py (MicroPython side).
#   micropython tests/mp_reference.py SEED PULSES STATE_DIR [social [JUMP_S]]
# Drives the real meter with pulse bursts from a seeded generator and prints
# the result as JSON. The host side rebuilds the same schedule from the seed
# and prices it with fractions.Fraction.
import sys
import json
import boards
import main
from simkit import make_cfg

SEED = int(sys.argv[1])
TOTAL = int(sys.argv[2])
K = (450, 1)                                   # pulses per litre
T1 = {"v": 1, "at": 0, "b": [[5000, 310_000], [15000, 470_000], [0, 930_000]], "sc": 41_000}
T2 = {"v": 2, "at": 0, "b": [[3000, 333_333], [12000, 555_557], [0, 777_779]], "sc": 77_777}
TARIFF_AT = TOTAL * 3 // 10                    # stage T2 once this many pulses are in
if len(sys.argv) > 4 and sys.argv[4] == "social":
    # free basic water and a daily allowance renewed at 06:00, then a tariff
    # with its own allowance and a minimum charge that the first period's
    # end tops up to
    T1 = dict(T1, fb=2000, fd=[850, 6])
    T2 = dict(T2, fd=[780, 6], mc=9_000_000)
# a trusted set_time JUMP_S seconds forward once JUMP_AT pulses are in: the
# period ends it passes each close with their standing and minimum charge
JUMP_S = int(sys.argv[5]) if len(sys.argv) > 5 else 0
JUMP_AT = TOTAL * 6 // 10


class Burst:
    def __init__(self):
        self.pending = 0

    def take(self):
        n, self.pending = self.pending, 0
        return n

    def mark(self):
        return None     # a count that restarts with the CPU (metering/pulses.py)

    def resume(self, mark):
        pass


def lcg(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


hw = boards.load("unix").build(state_dir=sys.argv[3], start=1768867200)   # 2026-01-20
cfg = make_cfg(k=list(K), tariff=T1, period_day=1, max_balance=10 ** 9, max_topup=10 ** 9,
               burst_lph=0, leak_window_s=0, reopen="auto")
m = main.assemble(hw, cfg)
src = Burst()
m.pulses = src
m.apply_credit("ref", 1, 1, 900_000_000)
x = SEED
sent = 0
staged = False
bursts = 0
while sent < TOTAL:
    x = lcg(x)
    n = min(1 + x % 5000, TOTAL - sent)
    x = lcg(x)
    dt = 1 + x % 1200                          # seconds between polls
    src.pending = n
    sent += n
    if JUMP_S and sent >= JUMP_AT:
        m.set_time(hw.clock.time() + JUMP_S)
        JUMP_S = 0
    hw.clock.advance(dt * 1000)
    m.poll()
    bursts += 1
    if not staged and sent >= TARIFF_AT:
        m.stage_tariff(dict(T2, at=hw.clock.time()))
        staged = True
h = m.history
days = list(h.records("d", 0, 200))
print(json.dumps({"charged": 900_000_000 - m.balance, "pulses": sent, "ml": m.volume.ml(),
                  "bursts": bursts, "t": hw.clock.time(), "tv": m.billing.tariff.version,
                  "days_chg": sum(r[7] for r in days) + h.today()["chg"],
                  "days_ml": sum(r[5] for r in days) + h.today()["ml"], "days": len(days),
                  "months_chg": [r[7] for r in h.records("m", 0, 40)][::-1]}))
