"""Staged rollout end to end (docs/OTA.md §6): the head-end's Rollout, a real
Mosquitto with the project's ACL and TLS, and meter processes booted by
main.boot() on the unix board with its modelled OTA flash. A meter's reset
after set_boot ends its process, as a chip's reset does; the test powers it
up again from its files."""

import json
import sys
import time
from pathlib import Path

from conftest import ROOT, wait_for

sys.path.insert(0, str(ROOT / "tools"))
import codes
from rollout import Rollout, _Serving, bucket, sim_image

SLOT = 262144
FLEET = ("M1", "M5")          # buckets 53 and 11: outside groups 1 and 2, inside 3


def _image(seed, n=60000, fault=0):
    body = (seed * (n // len(seed) + 1))[:n]
    return sim_image(body, fault)


def _start(w, mid, board="unix"):
    d = w.tmp / mid
    d.mkdir(parents=True, exist_ok=True)
    (d / "board.json").write_text(json.dumps({"ota_dir": str(d / "flash"), "ota_slot": SLOT, "board": board}))
    return w.start_meter(mid, speed=60, report_s=60, credit=None)


def _restart_after_reset(p, timeout=180):
    """The meter reset itself (its process ended): power it up again."""
    wait_for(lambda: p.proc.poll() is not None, timeout, f"{p.id} to reset")
    p.proc = None
    p.start()


def _settled(p, slot, held=False):
    # held: a trial whose card check failed waits in VERIFY for its retry
    # (docs/OTA.md §3), or idle once the halt reached it
    s = p.status()
    return s["running"] == slot and s.get("ota") in ((0, 2) if held else (0,)) and s["connected"]


def _keep_powered(procs, until, what, timeout=240):
    """Power up again every meter that reset itself, until until() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc is not None and p.proc.poll() is not None:
                p.proc = None
                p.start()
        try:
            if until():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ota_events(w, mid):
    return [e["arg"] for e in w.he.events(mid) if e["code"] == codes.EV_OTA]


def test_rollout_goes_group_by_group_updates_the_fleet_and_halts_on_failures(fresh_world):
    w = fresh_world
    assert [bucket(m) for m in FLEET] == [53, 11]
    procs = [_start(w, m) for m in FLEET]
    for p in procs:
        p.wait(lambda s: s["connected"] and s.get("ota") == 0, 60, f"{p.id} up with OTA")
    img = _image(b"version two ")
    r = Rollout(w.he, img, 2, "unix", 1, cs=16384, threshold=0.2)
    r.start(1)
    # group 1 (1 %) and group 2 (10 %) have no member among these meters:
    # each refuses, and the rollout moves on
    for p in procs:
        wait_for(lambda p=p: any(a & 0xFF == codes.OTA_REFUSED and a >> 8 & 0xFF == codes.REFUSED
                                 for a in _ota_events(w, p.id)), 90, f"{p.id} refuses group 1")
    assert r.check() == "running" and r.group == 2
    assert r.check() == "running" and r.group == 3
    for p in procs:
        _restart_after_reset(p)          # downloaded, checked, switched, reset
    for p in procs:
        p.wait(lambda s: s.get("fw") == 2 and s.get("ota") == 0 and s["connected"], 180,
               f"{p.id} confirmed version 2")
        assert p.status()["running"] == "ota_1"
    wait_for(lambda: r.check() == "done", 90, "rollout done")
    assert r.pieces_sent >= 2 * (len(img) // 2048)
    # version 3's card driver is broken: the first meter's trial fails, it
    # rolls back, and the failure halts the rollout for the rest
    bad = _image(b"version three ", fault=1)
    r3 = Rollout(w.he, bad, 3, "unix", 1, cs=16384, threshold=0.2, min_failed=2)
    r3.start(3)
    # both meters take it; their two self-test failures halt the rollout
    _keep_powered(procs, lambda: r3.check() == "halted", "rollout halted")
    assert any(a & 0xFF == codes.OTA_SELFTEST_FAILED for m in FLEET for a in _ota_events(w, m))
    for p in procs:
        _keep_powered(procs, lambda p=p: _settled(p, "ota_1", held=True), f"{p.id} back on version 2")
        assert p.status()["fw"] == 2
    # M1 takes a top-up and meters on version 2
    assert w.he.topup("M1", 100_000)["code"] == codes.ACCEPTED
    procs[0].set(flow=600)
    ml = procs[0].status()["ml"]
    procs[0].wait(lambda s: s["ml"] > ml + 500, 90, "M1 meters")
    for p in procs:
        p.kill()
    assert Path(w.tmp / "M1" / "flash" / "otadata.bin").exists()


def test_two_boards_rollouts_in_one_region_each_reach_their_meters(fresh_world):
    # r/<r>/ota/<board> (docs/OTA.md §4): M5 runs another board model
    # ("unix_b": the unix board under its own name). M1 is offline while its
    # board's rollout starts and the other board's starts after it, at once:
    # on one region topic the second manifest replaced the first and M1
    # never got its update. Each meter takes its own board's manifest and
    # never sees the other's (no wrong-board refusal).
    w = fresh_world
    m5 = _start(w, "M5", board="unix_b")
    m5.wait(lambda s: s["connected"] and s.get("ota") == 0, 60, "M5 up with OTA")
    ra = Rollout(w.he, _image(b"unix two "), 2, "unix", 1, cs=16384)
    rb = Rollout(w.he, _image(b"unix_b three "), 3, "unix_b", 1, cs=16384)
    serving = _Serving()                  # what `headend.py rollout run` serves with
    serving.rollouts = {"a": ra, "b": rb}
    ra.start(3)
    rb.start(3)
    w.he.ota = serving
    m1 = _start(w, "M1")                  # back online after both manifests went out
    procs = [m1, m5]
    for p, v in ((m1, 2), (m5, 3)):
        _keep_powered(procs, lambda p=p, v=v: p.status().get("fw") == v and _settled(p, "ota_1"),
                      f"{p.id} confirmed version {v}")
    wait_for(lambda: ra.check() == "done" and rb.check() == "done", 90, "both rollouts done")
    for mid in ("M1", "M5"):
        evs = _ota_events(w, mid)
        assert not [a for a in evs if a & 0xFF == codes.OTA_REFUSED and a >> 8 & 0xFF == codes.WRONG_BOARD], evs
    assert {ra.tally()["valid"], rb.tally()["valid"]} == {1}
    for p in procs:
        p.kill()
