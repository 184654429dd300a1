"""`make sim` end to end: the firmware on the unix board, a real broker, a scenario."""

import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_sim(*args, timeout=120):
    p = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sim.py"), *args],
        cwd=str(ROOT), capture_output=True, text=True, timeout=timeout,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_quick_scenario_meters_bills_and_reports(tmp_path):
    out = run_sim("quick", "--speed", "600", "--state", str(tmp_path / "s"), "--png", str(tmp_path / "png"))
    assert "meter M000001 running; the REPL is free" in out, "the sim boots as a board: main.boot()"
    shots = sorted((tmp_path / "png").glob("lcd-*.png"))
    assert shots and f"[sim] {len(shots)} LCD pictures in {tmp_path / 'png'}/" in out, "where the PNGs went"
    # a line of its own: the meter's thread prints meanwhile (it used to land in between)
    assert re.search(r"^meter M000001 running; .* lists the service commands\.$", out, re.M), out[:2000]
    # no card in this scenario, and the narrative says where its 3.00 comes from
    assert "this scenario uses no card" in out and "user (5.00)" not in out
    assert re.search(r"credit 3\.00 from the office, .*\(no card.*-> accepted", out)
    assert "valve open, 1 move," in out
    assert "mqtt >> m/M000001/t" in out, "telemetry must go out through the broker"
    m = re.search(r"water delivered\s+([\d.]+) m3 \(metered ([\d.]+) m3", out)
    delivered, metered = float(m.group(1)), float(m.group(2))
    assert delivered > 0.3 and abs(delivered - metered) < 0.0015  # K = 1 pulse/L: under a litre apart
    m = re.search(r"credit applied\s+([\d.]+)\s+charged ([\d.]+)\s+balance (-?[\d.]+)", out)
    assert Decimal(m.group(1)) - Decimal(m.group(2)) == Decimal(m.group(3)), "the summary adds up"
    credit, charged, balance = (float(x) for x in m.groups())
    # 3.50 per m3, flat: the charge is the price of the metered volume
    assert abs(charged - metered * 3.5) < 0.011


def test_day_scenario_shows_cards_tiers_cutoff_and_emergency(tmp_path):
    out = run_sim("day", "--state", str(tmp_path / "s"))       # the default speed, as make sim
    assert "user card removed (last tap: accepted)" in out
    assert "clone card removed (last tap: used)" in out, "a replayed card must not credit again"
    assert "foreign card removed (last tap: wrong-region)" in out
    assert "forged-tariff card removed (last tap: signature)" in out, "a forged tariff card"
    assert "[attack] Ctrl-C at each boot step of a production meter (board, meter, link, cards, " \
           "gate): refused, REPL closed, meter running; its Ctrl-C bytes arrived as data" in out
    assert "answered with the office key: REPL open for 5 min" in out
    assert "event  tariff (2)" in out, "the signed region tariff must take effect"
    assert "event  valve-closed (1)" in out, "credit ran out: closed for credit"
    assert "event  emergency-credit (500000)" in out, "a long press asks for emergency credit"
    assert "price 7.00/m3" in out, "the hose must reach the second block"
    assert "[office] user card topped up with 30.00 (3000000 units)" in out
    assert "-0.00" not in out, "a debt of a fraction of a cent shows as -0.01"
    assert "cards for this scenario: user (5.00), a copy of the user card" in out
    assert '"meter": "M000001"' in out, "the check card must carry the meter's reading"
    m = re.search(r"water delivered\s+([\d.]+) m3 \(metered ([\d.]+) m3", out)
    assert abs(float(m.group(1)) - float(m.group(2))) < 0.0015
    m = re.search(r"credit applied\s+([\d.]+)\s+charged ([\d.]+)\s+balance (-?[\d.]+)", out)
    assert float(m.group(1)) == 45.0          # card 5.00 + online 10.00 + card 30.00
    assert "event  credit (1000000)" in out, "the online top-up must be applied"
    assert re.search(r"mqtt >> m/M000001/a ack n=1 code=0", out), "and acknowledged"
    # store-and-forward across the outage: every record reaches the broker,
    # in order, with no gap in the sequence numbers
    down, back = out.index("[sim] broker down"), out.index("[sim] broker back")
    assert down < back
    seqs = [int(n) for n in re.findall(r"[TE]#(\d+)", out)]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def test_night_scenario_exercises_a_stale_valve_and_reopens_it(tmp_path):
    out = run_sim("night", "--speed", "1200", "--state", str(tmp_path / "s"))
    assert re.search(r"\[03:0\d:\d\d\] event  valve-exercise \(0\)", out), "exercise at the quiet hour"
    assert "event  valve-exercise (1)" in out, "the exercise must end with the valve open again"
    assert "valve open," in out


def test_ota_scenario_updates_rolls_back_and_refuses_a_forgery(tmp_path):
    out = run_sim("ota", "--state", str(tmp_path / "s"), timeout=300)     # make sim SCENARIO=ota
    assert "event  ota: version 2 refused (5): signature" in out, "the forged manifest"
    steps = ["version 2 accepted", "version 2 switched", "the meter reset itself",
             "version 2 trial", "board  booted ota_1", "version 2 valid",
             "version 3 accepted", "version 3 switched", "version 3 trial", "board  booted ota_0",
             "version 3 selftest-failed (4): check card reader", "version 3 rolled-back (1): 1 trial(s) not confirmed", "board  booted ota_1",
             "rollout of version 3: halted", "version 3 refused (11): refused"]
    at = 0
    for s in steps:                    # each after the one before
        at = out.find(s, at)
        assert at >= 0, s
    # the water ran while version 2 downloaded, and the rolled-back meter meters
    first = out[:out.index("the meter reset itself")]
    assert re.search(r"status flow +[1-9]\d*\.\d L/h", first)
    tail = out[out.rindex("board  booted ota_1"):]
    assert "water  tap set to 600 L/h" in tail
    # the summary counts every boot of the run, not only the last one
    m = re.search(r"summary \(ota, (\d+) simulated s\)", tail)
    assert int(m.group(1)) > 4 * 3600, "09:00 to after 13:00"
    m = re.search(r"water delivered\s+([\d.]+) m3 \(metered ([\d.]+) m3", tail)
    delivered, metered = float(m.group(1)), float(m.group(2))
    assert metered > 0.5 and abs(delivered - metered) < 0.005, (delivered, metered)


def test_sim_rejects_an_unknown_scenario_before_starting_anything(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "sim.py"), "nosuch",
                        "--state", str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid choice: 'nosuch'" in p.stderr
    assert "broker" not in p.stdout and not (tmp_path / "s").exists()
    h = subprocess.run([sys.executable, str(ROOT / "tools" / "sim.py"), "--help"],
                       capture_output=True, text=True, timeout=60).stdout
    assert all(name in h for name in ("day", "quick", "night", "ota"))


def test_sim_runs_on_the_pure_python_broker_when_mosquitto_is_absent(tmp_path):
    out = run_sim("quick", "--speed", "600", "--broker", "amqtt", "--state", str(tmp_path / "s"))
    assert "[sim] broker: amqtt" in out
    assert "mqtt >> m/M000001/t" in out, "telemetry must reach the broker"


def test_interactive_sim_takes_commands_from_the_keyboard(tmp_path):
    import pexpect
    child = pexpect.spawn(sys.executable, [str(ROOT / "tools" / "sim.py"), "quick", "--interactive",
                                           "--speed", "60", "--state", str(tmp_path / "s")],
                          cwd=str(ROOT), encoding="utf-8", timeout=60)
    try:
        child.expect("interactive: flow")
        child.sendline("card user")
        child.expect(r"event  credit \(500000\)")
        child.sendline("remove")
        child.expect(r"user card removed \(last tap: accepted\)")
        child.sendline("flow 1200")
        child.expect("water  tap set to 1200 L/h")
        child.sendline("status")
        child.expect(r'"bal": \d+')
        child.sendline("bogus")
        child.expect("unknown command: bogus")
        child.sendline("quit")
        child.expect("== summary")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_ctrl_c_ends_an_interactive_sim_with_its_summary(tmp_path):
    # what a person does at make sim INTERACTIVE=1: Ctrl-C at the terminal
    # reaches the whole process group; the meter closes its books
    import pexpect
    child = pexpect.spawn(sys.executable, [str(ROOT / "tools" / "sim.py"), "quick", "--interactive",
                                           "--speed", "60", "--state", str(tmp_path / "s")],
                          cwd=str(ROOT), encoding="utf-8", timeout=60)
    try:
        child.expect("interactive: flow")
        child.expect(r"event  valve-open")
        child.sendintr()
        child.expect("== summary")
        child.expect(r"credit applied\s+3\.00")
        child.expect(r"\[sim\] stopped by Ctrl-C")
        child.expect(pexpect.EOF)
        out = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    assert "Traceback" not in out, out


def test_the_console_answers_while_the_sim_plays(tmp_path):
    # make sim prints the console's address and an operator's login; while the
    # scenario plays, that login shows the simulated meter and the customer page is up
    from paykit import Session
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "sim.py"), "quick", "--speed", "60",
                          "--state", str(tmp_path / "s")], cwd=str(ROOT), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        for line in p.stdout:
            m = re.match(r"\[console\] (http://127\.0\.0\.1:\d+)/ : log in as (\w+), password (\S+);", line)
            if m:
                break
        else:
            raise AssertionError("make sim printed no console address")
        url, name, password = m.groups()
        s = Session(url)
        status, _, where = s.post("/login", {"name": name, "password": password})
        assert status == 302 and where.endswith("/meters"), "the printed login must work"
        status, page, _ = s.get("/meters")
        assert status == 200 and 'id="meter-M000001"' in page
        assert "Top up your water meter" in s.get("/pay")[1]
        rest = p.stdout.read()
        assert p.wait(120) == 0 and "== summary (quick" in rest
    finally:
        if p.poll() is None:          # a failure above: stop it as Ctrl-C would (its broker too)
            p.send_signal(signal.SIGINT)
            p.wait(30)
