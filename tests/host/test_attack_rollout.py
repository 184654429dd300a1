"""Halting a region's firmware rollout with forged failure reports (outside
review): a customer publishes EV_OTA "self-test failed" events for the
version being rolled out. Each test fails if the attack works."""
import sys
import time
from pathlib import Path

from comms import codec, sign
from mqttkit import connected

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import codes  # noqa: E402
from rollout import Rollout  # noqa: E402

FAILED = 2 << 16 | 1 << 8 | codes.OTA_SELFTEST_FAILED     # version 2, self-test failed


def _as(w, mid):
    return connected(w, mid, sign.mqtt_password(w.master, mid), mid)   # = mid's secrets.json "pw"


def _report(c, mid, key, seq0, n=1):
    recs = []
    for i in range(n):
        e = codec.event(seq0 + i, int(time.time()), codes.EV_OTA, FAILED)
        codec.set_seq(e, seq0 + i)
        recs.append(e)
    body = codec.batch(recs)
    c.publish(f"m/{mid}/e", body if key is None else codec.seal_up(key, f"m/{mid}/e", body),
              qos=1).wait_for_publish()


def _region_wide(w):
    r = Rollout(w.he, b"\x00" * 4096, 2, "unix", 1, cs=4096, threshold=0.2)
    r.start(1)
    for _ in range(3):
        r.check()
    assert r.status == "running" and r.group == 3      # the whole region now
    return r


def test_a_forged_failure_report_does_not_halt_the_rollout(fresh_world):
    w = fresh_world
    r = _region_wide(w)
    c = _as(w, "M4")
    _report(c, "M4", None, 1000)                           # untagged
    _report(c, "M4", b"guess", 1001)                       # tagged under a guess
    c.disconnect()
    c.loop_stop()
    time.sleep(1)
    print("tally", r.tally(), "->", r.check())
    assert r.status == "running" and r.tally()["failed"] == 0


def test_one_meters_own_failure_reports_do_not_halt_the_region(fresh_world):
    # the customer dumped their own meter's flash: its uplink key signs
    w = fresh_world
    r = _region_wide(w)
    uk = sign.uplink_key(sign.meter_key(w.master, "M4"))
    c = _as(w, "M4")
    _report(c, "M4", uk, 1, n=20)                         # however many, one meter
    time.sleep(1)
    assert r.tally()["failed"] == 1 and r.check() == "running"
    c.disconnect()
    c.loop_stop()
    # two more meters of the region really fail: three distinct meters halt it
    for mid in ("M2", "M5"):
        c = _as(w, mid)
        _report(c, mid, sign.uplink_key(sign.meter_key(w.master, mid)), 1)
        c.disconnect()
        c.loop_stop()
    time.sleep(1)
    print("tally", r.tally(), "->", r.check())
    assert r.status == "halted"
