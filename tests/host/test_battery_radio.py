"""A battery meter's reporting window against the real broker (Mosquitto,
TLS, per-meter ACL): the firmware runs on the unix battery board
(tests/mp_battery_proc.py), one fresh boot per wake, and its radio is on
only in its windows (docs/BATTERY.md §7).

The expected values come from the head-end's side (what it sent, the acks
it got) and from the meter's clock at each sleep, never from the meter's
own account of them."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import MICROPYTHON, ROOT, mp_env, sql, wait_for

import codes

METER = "M1"
AMOUNT = 5_000


class BatteryProc:
    def __init__(self, world, meter_id, d):
        self.world = world
        self.id = meter_id
        self.dir = Path(d)
        self.proc = None
        self.go = 0

    def provision(self, **cfg):
        self.dir.mkdir(parents=True, exist_ok=True)
        w = self.world
        w.he.provision(self.id, w.meters[self.id], self.dir,
                       {"host": w.broker.host, "port": w.broker.port, "tls": True,
                        "keepalive": 30, "backoff_max_s": 2, "timeout_ms": 3000},
                       w.broker.ca_pem)
        c = json.loads((self.dir / "config.json").read_text())
        c.update({"reopen": "auto", "friendly_hours": [0, 0], "friendly_days": []}, **cfg)
        (self.dir / "config.json").write_text(json.dumps(c))

    def start(self):
        self.log = open(self.dir / "proc.log", "ab")  # noqa: SIM115 - lives with the process
        self.ctl(go=self.go)
        self.proc = subprocess.Popen([MICROPYTHON, str(ROOT / "tests" / "mp_battery_proc.py"),
                                      str(self.dir)], cwd=str(ROOT), env=mp_env(),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def ctl(self, **kw):
        p = self.dir / "ctl.json"
        cur = json.loads(p.read_text()) if p.exists() else {}
        cur.update(kw)
        p.with_suffix(".new").write_text(json.dumps(cur))
        p.with_suffix(".new").replace(p)

    def status(self):
        return json.loads((self.dir / "status.json").read_text())

    def output(self):
        return (self.dir / "proc.log").read_text(errors="replace")[-3000:]

    def asleep(self, timeout=60):
        """Wait until the meter is about to sleep after its current wake."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("meter exited: " + self.output())
            s = self.status()
            return s if s["sleeps"] == self.go else None
        return wait_for(ready, timeout, "the meter's next sleep")

    def sleep(self):
        """Let the meter sleep until its next wake, and wait for that wake's end."""
        self.go += 1
        self.ctl(go=self.go)
        return self.asleep()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.ctl(stop=1)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture()
def meter(fresh_world, tmp_path):
    p = BatteryProc(fresh_world, METER, tmp_path / "bm")
    yield p
    p.kill()


def _until_window(p, s):
    """Sleep on until a wake that opened a window; returns its status."""
    windows = s["windows"]
    for _ in range(6):
        s = p.sleep()
        if s["windows"] > windows:
            return s
    raise AssertionError("no reporting window in six wakes: %r" % s)


def test_a_topup_sent_while_the_meter_sleeps_is_applied_once_across_a_cut_before_its_ack(
        fresh_world, meter):
    he = fresh_world.he
    meter.provision()
    meter.start()
    s = meter.asleep()
    # the power-on window: the meter connected once, so the broker keeps its session
    assert s["windows"] == 1 and s["reason"] == "power"
    wait_for(lambda: sql(he, "SELECT online FROM meters WHERE id = :m", m=METER) == [(0,)],
             20, "the meter offline after its window")
    assert s["bal"] == 0 and s["w_next"] > s["t"]
    # the battery record came with the window's telemetry; the head-end shows it
    b = wait_for(lambda: [x for x in he.meters() if x["id"] == METER][0]["battery"], 20,
                 "the battery record at the head-end")
    assert s["w_last"] - 60 <= b["t"] <= s["w_last"]
    assert s["pct"] <= b["pct"] <= s["pct"] + 1 and b["days"] >= s["days"] and b["mv"] == 0
    window_at = s["w_next"]
    # the top-up goes to the broker while the meter sleeps
    sent = he.topup(METER, AMOUNT, timeout=None)
    time.sleep(0.5)
    assert he.topup_status(METER, 1, sent["seq"])["status"] == "pending"
    # the next window: the broker delivers it, the meter applies it (saved),
    # and power goes before the ack leaves
    meter.ctl(cut=1)
    meter.go += 1
    meter.ctl(go=meter.go)
    wait_for(lambda: "CUT" in meter.output(), 60, "the credit applied in the next window")
    meter.kill()
    assert he.topup_status(METER, 1, sent["seq"])["status"] == "pending"   # no ack came
    # power back: the head-end re-sends the pending top-up (same key, new
    # counter); it waits at the broker or reaches the power-on window
    meter.ctl(cut=0)
    meter.go = 0
    meter.start()
    again = he.retry(METER, timeout=None)[0]
    s = meter.asleep()
    if he._acks.get((METER, again["n"])) is None:
        s = _until_window(meter, s)
    a = he.wait_ack(METER, again["n"], timeout=30)
    assert a["code"] == codes.USED                   # applied before, not again
    assert s["bal"] == AMOUNT                        # exactly once
    assert len(s["credits"]) == 1 and s["credits"][0][3] == AMOUNT
    # applied in the first window after it was sent, not before, not a day late
    assert window_at <= s["credits"][0][1] <= window_at + 60
    assert he.topup_status(METER, 1, sent["seq"])["status"] == "applied"


def test_the_head_end_sets_hourly_windows_and_a_press_fetches_a_command_at_once(fresh_world, meter):
    he = fresh_world.he
    meter.provision()
    meter.start()
    s = meter.asleep()
    assert s["w_next"] - s["t"] > 3600            # daily: the next window is the night's
    # hourly windows, sent while the meter sleeps: in force from the next window
    sent = he.configure(METER, "window_s", 3600, timeout=None)
    s = _until_window(meter, s)
    assert he.wait_ack(METER, sent["n"], timeout=30)["code"] == codes.ACCEPTED
    assert 0 < s["w_next"] - s["w_last"] <= 3600
    first = s["w_last"]
    s = _until_window(meter, s)                    # and the one after, an hour later
    assert s["reason"] == "timer" and 3600 - 60 <= s["w_last"] - first <= 3600 + 60
    # a command sent now waits for the next window, unless the customer presses
    again = he.topup(METER, AMOUNT, timeout=None)
    he.flush()
    meter.ctl(press=[meter.go + 1, 31 * 60_000])   # 31 min on: polls are 30 min apart at least
    s = meter.sleep()
    assert s["reason"] == "button" and s["polls"] == 1
    assert he.wait_ack(METER, again["n"], timeout=30)["code"] == codes.ACCEPTED
    assert s["bal"] == AMOUNT and s["w_next"] - s["t"] > 60   # applied in the poll, not at a slot
    # a second press 10 min later opens no window: the command waits for the slot
    third = he.topup(METER, AMOUNT, timeout=None)
    he.flush()
    meter.ctl(press=[meter.go + 1, 10 * 60_000])
    s = meter.sleep()
    assert s["reason"] == "button" and s["polls"] == 1 and s["bal"] == AMOUNT
    s = _until_window(meter, s)
    assert he.wait_ack(METER, third["n"], timeout=30)["code"] == codes.ACCEPTED
    assert s["bal"] == 2 * AMOUNT
