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

import datetime
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


def schedule(seed, total, jump_s=0):
    """The seeded schedule: (time, pulses so far) after each poll, the
    clock set jump_s forward once 60 % of the pulses are in (0: never).
    Returns it and the poll right after which T2 is staged (30 %)."""
    polls, x, sent, t = [], seed, 0, START
    while sent < total:
        x = lcg(x)
        n = min(1 + x % 5000, total - sent)
        x = lcg(x)
        t += 1 + x % 1200
        sent += n
        if jump_s and sent >= total * 6 // 10:
            t, jump_s = t + jump_s, 0
        polls.append((t, sent))
    return polls, next(i for i, (_, s) in enumerate(polls) if s >= total * 3 // 10)


def ml_of(pulses):
    """Exact, then the meter's whole-millilitre floor."""
    return (Fraction(pulses) * 1000 / K).__floor__()


def meter_run(tmp_path, seed, total, *mode):
    """tests/mp_reference.py's meter on the same schedule: its figures."""
    p = subprocess.run(
        [MICROPYTHON, str(ROOT / "tests" / "mp_reference.py"), str(seed), str(total), str(tmp_path), *mode],
        cwd=str(ROOT), env=mp_env(), capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def reference(seed, total):
    polls, tariff_at = schedule(seed, total)
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
    got = meter_run(tmp_path, seed, total)
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


# -- social tariffs (docs/METERING.md "Social tariffs"), the same schedule --
# T1 with 2000 L free per period and 850 L a day renewed at 06:00; T2 with
# 780 L a day (near the daily use: some days use less, some more) and a
# minimum period charge of 9 000 000 units, which the
# first period's end (under T2 by then) tops up to.
S1 = dict(blocks=T1[0], sc=T1[1], fb=2000 * 1000, allow=850 * 1000, reset_h=6, mc=0)
S2 = dict(blocks=T2[0], sc=T2[1], fb=0, allow=780 * 1000, reset_h=6, mc=9_000_000)


def next_reset(t, hour):
    r = t // 86400 * 86400 + hour * 3600
    return r + 86400 if r <= t else r


def period_ends(after, count):
    """The next `count` local 00:00 of day 1 (tz 0) strictly after `after`."""
    d = datetime.datetime.fromtimestamp(after, datetime.timezone.utc)
    y, m, out = d.year, d.month, []
    while len(out) < count:
        m, y = (1, y + 1) if m == 12 else (m + 1, y)
        out.append(int(datetime.datetime(y, m, 1, tzinfo=datetime.timezone.utc).timestamp()))
    return out


def reference_social(seed, total, jump_s=0):
    """The documented rule, step by step from the text: the chargeable
    volume is the period volume less the daily allowance used (an allowance
    day ends at the first poll at or after its reset time, with the volume
    counted by then; a period start and a tariff change open a fresh one),
    priced with the period's free volume first, then the blocks; a segment
    floors its volume charge and its standing charge once; a period's charge
    below the minimum is topped up at its end, and every period end passed
    (a clock set `jump_s` forward once 60 % of the pulses are in) closes in
    turn, the water counted by then in the first of them."""
    polls, tariff_at = schedule(seed, total, jump_s)

    def price_s(tar, c):
        return price(tar["blocks"], max(0, c - tar["fb"]))

    st = {"tar": S1, "p_ml": 0, "fd_ml": 0, "fd_used": 0, "fd_end": next_reset(START, 6),
          "seg_c": 0, "seg_t": START, "period": 0}
    total_charged, months = 0, []
    days_under = days_over = 0

    def chargeable(pv):
        tar = st["tar"]
        return pv - st["fd_used"] - min(pv - st["fd_ml"], tar["allow"])

    def allowance_check(pv, now):
        nonlocal days_under, days_over
        if now >= st["fd_end"]:
            if pv - st["fd_ml"] < st["tar"]["allow"]:
                days_under += 1
            else:
                days_over += 1
            st["fd_used"] += min(pv - st["fd_ml"], st["tar"]["allow"])
            st["fd_ml"] = pv
            st["fd_end"] = next_reset(now, st["tar"]["reset_h"])

    def close(pv, now):
        nonlocal total_charged
        tar = st["tar"]
        c = (price_s(tar, chargeable(pv)).__floor__() - price_s(tar, st["seg_c"]).__floor__()
             + Fraction(tar["sc"] * (now - st["seg_t"]), 86400).__floor__())
        st["period"] += c
        total_charged += c

    ends = period_ends(START, 24)
    assert ends[0] == FEB_1
    for i, (t, pulses) in enumerate(polls):
        ml = ml_of(pulses)
        while t >= ends[0]:
            end = ends.pop(0)
            pv = ml - st["p_ml"]
            allowance_check(pv, end)
            close(pv, end)
            short = max(0, st["tar"]["mc"] - st["period"])
            total_charged += short
            months.append(st["period"] + short)
            st.update(p_ml=ml, fd_ml=0, fd_used=0, fd_end=next_reset(end, 6), seg_c=0, seg_t=end,
                      period=0)
        allowance_check(ml - st["p_ml"], t)
        if i == tariff_at:
            pv = ml - st["p_ml"]
            close(pv, t)
            st["fd_used"] += min(pv - st["fd_ml"], st["tar"]["allow"])
            st["tar"] = S2
            st.update(fd_ml=pv, fd_end=next_reset(t, 6), seg_t=t)
            st["seg_c"] = chargeable(pv)
    t_end, p_end = polls[-1]
    close(ml_of(p_end) - st["p_ml"], t_end)
    return total_charged, months, len(polls), t_end, (days_under, days_over)


def test_social_tariff_charged_exactly_by_the_documented_rule(tmp_path):
    seed, total = 20261201, 10_000_000
    got = meter_run(tmp_path, seed, total, "social")
    charged, months, polls, t_end, (under, over) = reference_social(seed, total)
    assert under >= 3 and over >= 3, "the allowance must be both used up and not on some days"

    assert got["bursts"] == polls and got["t"] == t_end and got["tv"] == 2
    assert months == got["months_chg"] and months[0] == 9_000_000, (months, got["months_chg"])
    assert got["charged"] == charged, "meter %d, reference %d" % (got["charged"], charged)
    # the frozen daily registers add up to the money and the volume, exactly
    assert got["days_chg"] == got["charged"] and got["days_ml"] == got["ml"] and got["days"] >= 25
    plain, _, _, _, _ = reference(seed, total)
    print("social reference: charged %d units (without the social fields %d), first period %d"
          % (charged, plain, months[0]))


def test_social_tariff_over_a_clock_set_forward_closes_every_period_it_passes(tmp_path):
    # 75 days forward at 60 % of the schedule (early February to late April):
    # March 1 closes with the water since February 1, April 1 is an empty
    # period (standing charge, topped up to the minimum), May 1 comes by polls
    seed, total, jump = 20261201, 10_000_000, 75 * 86400
    got = meter_run(tmp_path, seed, total, "social", str(jump))
    charged, months, polls, t_end, _ = reference_social(seed, total, jump)
    assert len(months) == 4 and months[2] == 9_000_000, months
    assert got["bursts"] == polls and got["t"] == t_end
    assert months == got["months_chg"], (months, got["months_chg"])
    assert got["charged"] == charged, "meter %d, reference %d" % (got["charged"], charged)
    assert got["days_chg"] == got["charged"] and got["days_ml"] == got["ml"]
