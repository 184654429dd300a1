"""Power cuts: the meter process is killed (SIGKILL) at random moments while
water flows and credits arrive, then started again from its state directory.

Checks, over many cuts: every acknowledged credit survives; credits offered
again after a cut are never applied twice; the volume lost at a cut stays
within the save bound (save_l = 10 L, or 60 s of flow); and at the end the
balance is exactly the credits minus the price of the metered volume.
"""

import random
import subprocess
import time
from pathlib import Path

from mpenv import MICROPYTHON, mp_env

ROOT = Path(__file__).resolve().parents[2]
CREDITS, AMOUNT = 40, 200_000
FLOW_ML_PER_S = 200          # 720 L/h
SAVE_BOUND_ML = 10_000 + 2 * FLOW_ML_PER_S   # save_l, plus the poll in flight
POLL_ML = 1_000              # one poll's volume at most (K = 1 pulse/L): saved, not yet printed


def launch(state, start, acked, steps, out):
    # stdout to a file: the meter never blocks on a full pipe, so a kill can
    # land anywhere in its loop, not only in a print
    return subprocess.Popen(
        [MICROPYTHON, str(ROOT / "tests" / "mp_powercut.py"), str(state), str(start),
         ",".join(str(s) for s in sorted(acked)), str(steps)],
        cwd=str(ROOT), env=mp_env(), stdout=out, stderr=subprocess.STDOUT,
    )


def wait_restored(path, proc, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if path.read_text().startswith("R "):
            return True
        time.sleep(0.005)
    return False


def out_last(path):
    return path.read_text().strip().splitlines()[-1]


def parse(out):
    restored = last_ml = last_t = done = None
    acks = []
    # a kill can cut the last line short: only lines ended by a newline count
    for line in out.split("\n")[:-1]:
        f = line.split()
        if not f:
            continue
        if f[0] == "R" and len(f) == 3:
            restored = (int(f[1]), int(f[2]))
        elif f[0] == "M" and len(f) == 3:
            last_ml, last_t = int(f[1]), int(f[2])
        elif f[0] == "A" and len(f) == 3:
            acks.append(int(f[1]))
        elif f[0] == "DONE" and len(f) == 3:
            done = (int(f[1]), int(f[2]))
    return restored, last_ml, last_t, acks, done


def test_random_power_cuts_lose_and_double_nothing(tmp_path):
    rng = random.Random(4064)
    state = tmp_path / "state"
    state.mkdir()
    acked = set()
    start = 1767225600
    last_ml = 0
    cuts = 0
    for i in range(30):
        log = tmp_path / ("run%d.out" % i)
        with open(log, "w") as fh:
            p = launch(state, start, acked, 100_000, fh)
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.05))      # early: may land inside restore
            else:
                assert wait_restored(log, p), log.read_text()[-2000:]
                time.sleep(rng.uniform(0.0, 0.15))
            p.kill()
            p.wait()
        restored, ml, t, acks, _ = parse(log.read_text())
        if restored is None:
            continue                      # cut before it even restored: nothing to check
        cuts += 1
        # the volume restored after the previous cut is within the save bound
        assert last_ml - SAVE_BOUND_ML <= restored[0] <= last_ml + POLL_ML, (restored, last_ml)
        acked.update(acks)
        if ml is not None:
            last_ml, start = ml, t + 1
    assert cuts >= 20
    # the last run finishes; every credit not yet acknowledged is offered again
    log = tmp_path / "final.out"
    with open(log, "w") as fh:
        p = launch(state, start, acked, 400, fh)
        assert p.wait(timeout=120) == 0, log.read_text()[-2000:]
    restored, ml, t, acks, done = parse(log.read_text())
    assert last_ml - SAVE_BOUND_ML <= restored[0] <= last_ml + POLL_ML
    acked.update(acks)
    assert acked == set(range(1, CREDITS + 1))
    final_ml, balance = done
    charged = final_ml * 350_000 // 1_000_000
    assert balance == CREDITS * AMOUNT - charged, "credit lost or doubled"
    assert "V 1" in out_last(log), "the valve must still be open: no false burst or leak after 30 reboots"
