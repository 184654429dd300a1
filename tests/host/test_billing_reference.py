"""Billing reference: 10^7 pulses through the real meter in the unix port,
priced again here with fractions.Fraction from the same seeded schedule.

The documented rule (docs/METERING.md): volume is floor(pulses * 1000 / K)
millilitres; within a tariff segment of a billing period the volume charge
is floor(price(v_end)) - floor(price(v_start)) of the period volume, the
standing charge floor(sc * seconds / 86400); a segment ends at a tariff
activation (at the poll that activates it) or a period rollover (at the
period's end, with the volume counted by then). The meter must match this
to the unit, and stay within two units per segment of the unrounded price.
"""

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
from mpenv import MICROPYTHON, mp_env  # noqa: E402

K = Fraction(450, 1)
T1 = ([(5000, 310_000), (15000, 470_000), (0, 930_000)], 41_000)
T2 = ([(3000, 333_333), (12000, 555_557), (0, 777_779)], 77_777)
START = 1768867200          # 2026-01-20 00:00 UTC
FEB_1 = 1769904000          # the period rolls over on day 1


def price(blocks, ml):
    """Exact rational price (units) of `ml` millilitres in a period."""
    total, lower = Fraction(0), Fraction(0)
    for upto_l, p in blocks:
        upper = Fraction(upto_l * 1000)
        if upto_l == 0 or ml <= upper:
            return total + (ml - lower) * p / 1_000_000
        total += (upper - lower) * p / 1_000_000
        lower = upper
    return total


def lcg(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


def reference(seed, total):
    # the schedule: (time, pulses so far) after each poll
    polls, x, sent, t = [], seed, 0, START
    while sent < total:
        x = lcg(x)
        n = min(1 + x % 5000, total - sent)
        x = lcg(x)
        t += 1 + x % 1200
        sent += n
        polls.append((t, sent))
    tariff_at = next(i for i, (_, s) in enumerate(polls) if s >= total * 3 // 10)

    def ml_of(pulses):          # exact, then the meter's whole-millilitre floor
        return (Fraction(pulses) * 1000 / K).__floor__()

    rule_total, exact_total, segments = 0, Fraction(0), 0
    tariff = T1
    period_start_ml, period_start_t = 0, START
    seg_ml, seg_t = 0, START     # period volume and time at the segment's start
    rolled = False

    def close(end_pv, end_t):
        nonlocal rule_total, exact_total, segments
        blocks, sc = tariff
        rule_total += (price(blocks, end_pv).__floor__() - price(blocks, seg_ml).__floor__()
                       + (Fraction(sc * (end_t - seg_t), 86400)).__floor__())
        exact_total += price(blocks, end_pv) - price(blocks, seg_ml) + Fraction(sc * (end_t - seg_t), 86400)
        segments += 1

    for i, (t, pulses) in enumerate(polls):
        ml = ml_of(pulses)
        if not rolled and t >= FEB_1:
            close(ml - period_start_ml, FEB_1)
            period_start_ml, period_start_t = ml, FEB_1
            seg_ml, seg_t = 0, FEB_1
            rolled = True
        if i == tariff_at:              # staged right after poll i, with "at" = now: active at once
            close(ml - period_start_ml, t)
            tariff = T2
            seg_ml, seg_t = ml - period_start_ml, t
    t_end, p_end = polls[-1]
    close(ml_of(p_end) - period_start_ml, t_end)
    return rule_total, exact_total, segments, len(polls), t_end


def test_ten_million_pulses_charged_exactly(tmp_path):
    seed, total = 20261123, 10_000_000
    p = subprocess.run(
        [MICROPYTHON, str(ROOT / "tests" / "mp_reference.py"), str(seed), str(total), str(tmp_path)],
        cwd=str(ROOT), env=mp_env(), capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    rule, exact, segments, polls, t_end = reference(seed, total)
    assert got["pulses"] == total and got["bursts"] == polls and got["t"] == t_end
    assert got["tv"] == 2
    assert segments == 3                      # a rollover and a tariff change happened
    assert got["charged"] == rule, "meter %d, reference %d" % (got["charged"], rule)
    # exactness against the unrounded price: each segment floors its volume
    # charge and its standing charge once, and the volume is whole mL
    assert abs(got["charged"] - exact) < 2 * segments + 1
    print("reference: %d pulses, %d polls, charged %d units, exact %s, deviation %.3f units"
          % (total, polls, got["charged"], float(exact), float(got["charged"] - exact)))
