"""make sim SCENARIO=battery, end to end: a day of a battery meter
(boards/unix/simbattery.py on the unix battery board, a real broker, the
reference head-end). The facts the simulator prints are checked against
sources it does not print from: the head-end's database (what the meter
uplinked in its windows and acknowledged), the scenario's own script, and
the simulator's objects (DIR/battery-sim.json)."""

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from broker import mosquitto_path  # noqa: E402

START = 1767571200                  # boards/unix/scenarios.py BATTERY_START
EV_CREDIT, EV_VALVE_CLOSED = 2, 8
WHY_CREDIT = 1


def _hms(t):
    return "%02d:%02d:%02d" % ((t // 3600) % 24, (t // 60) % 60, t % 60)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if mosquitto_path() is None:
        pytest.fail("Mosquitto is not installed: run `make test`", pytrace=False)
    state = tmp_path_factory.mktemp("simb") / "state"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "sim.py"), "battery", "--state", str(state)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout, state


def test_the_printed_day_is_what_the_meter_did_and_uplinked(run):
    out, state = run
    facts = json.loads((state / "battery-sim.json").read_text())
    db = sqlite3.connect(state / "headend.db")
    wakes = re.findall(r"^\[(\d\d:\d\d:\d\d)\] WAKE (.*?): ", out, re.M)
    # a run of ULP wakes shows its first, then one line for the rest
    folded = [int(n) for n in re.findall(r"^ +\.\.\. and (\d+) more ULP wakes like it", out, re.M)]
    line = re.search(r"^\[summary\] wakes: (.*)$", out, re.M).group(1)
    summary = {k: int(v) for k, v in (kv.split() for kv in line.split(", "))}
    # every wake printed once or folded, and they add up to the simulator's count by reason
    assert summary == facts["wakes"]
    assert len(wakes) + sum(folded) == sum(facts["wakes"].values())
    assert folded and len(wakes) < 40, "the hose's ULP wakes are told in one line"
    assert wakes[0][1] == "power-on" and facts["wakes"]["ulp"] >= 1 and facts["wakes"]["button"] == 3
    # windows: the printed count, each settled but the one the update's
    # switch cut, and the head-end heard each one: a telemetry record per
    # window, none between them
    m = re.search(r"^\[summary\] windows: (\d+), settled (\d+), cut by a reset (\d+)", out, re.M)
    assert tuple(int(g) for g in m.groups()) == (facts["windows"], facts["settled"], facts["cut"])
    assert facts["settled"] == len(re.findall(r"^ +window: settled", out, re.M))
    assert facts["cut"] == 1 == len(re.findall(r"^ +window: cut by the chip's reset", out, re.M))
    assert facts["windows"] == facts["settled"] + facts["cut"]
    tele = db.execute("SELECT t, ml, bal FROM telemetry WHERE kind = 1 ORDER BY seq").fetchall()
    assert len(tele) == facts["windows"]
    # the credits: printed times are the meter's credit events as uplinked,
    # and the head-end's top-ups are settled as applied with those amounts
    printed = [(int(a), t) for a, t in re.findall(r"^\[summary\] credit [\d.]+ \((\d+) units\) applied at (\S+)",
                                                          out, re.M)]
    ev = db.execute("SELECT t, arg FROM events WHERE code = ? ORDER BY seq", (EV_CREDIT,)).fetchall()
    assert printed == [(arg, _hms(t)) for t, arg in ev]
    # the first top-up waits for the night's window (02:02 for this meter
    # id); the card is read in the 09:00 press's card window; the second
    # top-up comes with the customer's press at 12:05, not at the next window
    assert [a for a, _ in printed] == [100000, 500000, 200000]
    (t1, _), (t2, _), (t3, _) = ev
    assert START + 7320 <= t1 < START + 7320 + 60
    assert START + 32402 <= t2 < START + 32420
    assert START + 43500 <= t3 < START + 43500 + 60
    topups = db.execute("SELECT amount, status FROM topups ORDER BY seq").fetchall()
    assert topups == [(100000, "applied"), (200000, "applied")]
    # the cut-off: woken by the ULP, at the time the head-end got in event 8 (why credit)
    cut = re.search(r"^\[summary\] valve closed at (\S+), for credit, woken by the ULP threshold$", out, re.M)
    closes = db.execute("SELECT t FROM events WHERE code = ? AND arg = ? ORDER BY seq",
                        (EV_VALVE_CLOSED, WHY_CREDIT)).fetchall()
    assert cut and cut.group(1) == _hms(closes[-1][0])
    assert closes[-1][0] in facts["ulp_wakes"] and START + 61200 < closes[-1][0] < START + 68400
    # the water: billed whole pulses, within one pulse (1 L) of the flow model's;
    # the last telemetry the head-end has carries the billed volume and balance
    w = re.search(r"^\[summary\] water: (\d+) mL delivered, (\d+) mL billed, balance -?[\d.]+ \((-?\d+) units\)",
                  out, re.M)
    delivered, billed, bal = (int(x) for x in w.groups())
    assert (delivered, billed, bal) == (facts["delivered_ml"], facts["billed_ml"], facts["balance"])
    assert abs(billed - delivered) < 1000 and tele[-1][1:] == (billed, bal)
    assert bal == 800000 - billed // 1000 * 350       # 3.50 per m3: every credit, spent
    # the cell: the battery record the head-end keeps
    pct = db.execute("SELECT pct FROM battery").fetchone()[0]
    assert pct == facts["cell_pct"] and f"{pct} % left" in out


EV_OTA = 44
OTA_ACCEPTED, OTA_SWITCHED, OTA_TRIAL, OTA_VALID = 1, 6, 7, 8


def test_a_firmware_update_is_taken_in_the_nights_window_and_confirmed_in_the_wake_of_its_switch(run):
    """The office's rollout at 21:00 (a retained manifest) waits for the
    night's 02:02 window, which downloads, verifies and switches; the chip
    resets there and the new image's trial, in the same wake, marks it
    valid. What is printed is what the meter logged and the head-end got."""
    out, state = run
    facts = json.loads((state / "battery-sim.json").read_text())
    db = sqlite3.connect(state / "headend.db")
    steps = [(t, a & 0xFF) for t, a in facts["ota"] if a >> 16 == 2]
    assert [s for _, s in steps if s != 11] == [OTA_ACCEPTED, OTA_SWITCHED, OTA_TRIAL, OTA_VALID], steps
    night = START + 86400 + 7320                    # the second night's window, 02:02
    assert all(night <= t < night + 130 for t, _ in steps), "in that window and its reset's wake"
    assert facts["running"] == "ota_1" and facts["fw_floor"] == 2
    # every step printed, in order, at its time, and the reset between switch and trial
    printed = re.findall(r"^ +\[(\S+)\] ota: version 2 (\S+)", out, re.M)
    names = {OTA_ACCEPTED: "accepted", OTA_SWITCHED: "switched", OTA_TRIAL: "trial", OTA_VALID: "valid", 11: "running"}
    assert printed == [(_hms(t), names[s]) for t, s in steps]
    at = out.index("ota: version 2 switched")
    assert out.index("the chip resets", at) < out.index("WAKE reset", at) < out.index("ota: version 2 trial")
    assert f"[summary] firmware: version 2 valid at {_hms(steps[-1][0])}, running from ota_1" in out
    # the head-end has the meter's verdict: the rollout's tally counts it valid
    got = [a & 0xFF for (a,) in db.execute("SELECT arg FROM events WHERE code = ? ORDER BY seq", (EV_OTA,))
           if a >> 16 == 2]
    assert got[-1] == OTA_VALID and OTA_ACCEPTED in got
    assert db.execute("SELECT status FROM rollouts WHERE version = 2").fetchone()[0] == "running"
