# A battery meter's service mode (firmware/batservice.py): entered by the
# line `svc` on the serial port within LISTEN_MS of a power-on, metering on
# the meter's own loop meanwhile, the production gate as on mains, bounded
# in time and in entries a day, its CPU time in the cell's charge count.
# The serial line is scripted on the virtual clock; the meter's thread is a
# ManualTicker stepped at each of the gate's waits (as
# tests/mp/test_attack_serial_gate.py does for a mains meter).
import batservice
import codes
import officekit
import power
import service
import wake
from batterykit import build, open_with
from boards.ticker import ManualTicker
from boards.unix_battery import Plant, Reset
from mptest import fresh_dir, raises
from serialkit import Line


def _answer(minutes):
    def make(line):
        ch = [p for p in line.printed if p.startswith("svc-challenge")][-1].split()
        payload = ("%s %d %s %d" % (ch[1], int(ch[2]), ch[3], minutes)).encode()
        return "svc-open %d %s" % (minutes, officekit.sign(b"svc", payload, officekit.TEST_D).hex())
    return make


def _power_on(plant, d, litres=1000):
    """A power-on boot of a production battery meter with credit, water
    running, its thread a ManualTicker."""
    m, hw = build(plant, d, production=True)
    open_with(m, litres)
    m, hw = build(plant, d, production=True)      # the boot after the top-up opens the valve
    assert hw.wake_reason == "power"
    m.attach_office(officekit.keys())
    hw.ticker = ManualTicker()
    plant.flow.set_rate_lph(600)
    return m, hw


def _offer(m, hw, line):
    def wait(ms):
        hw.clock.advance(ms)
        t = getattr(hw, "ticker", None)
        if t is not None and t.running:
            t.tick()
    return batservice.offer(m, hw, True, "test", console=line, wait=wait)


def _mode_events(m):
    return [e[3] for e in m.log.recent(60) if e[2] == codes.EV_SERVICE_MODE]


def test_svc_at_power_on_meters_behind_the_gate_and_sleeps_when_unanswered():
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    assert hw.wake_reason == "power"
    ml0, used0, t0 = m.volume.ml(), m.cell.used, hw.clock.now_ms()
    line = Line(hw.clock, [(1, "svc")])
    assert _offer(m, hw, line) is None, line.text()
    took = hw.clock.now_ms() - t0
    # the meter's task sleeps on the virtual clock too: some seconds more
    assert batservice.GATE_S * 1000 <= took < batservice.GATE_S * 1000 + 5000, took
    txt = line.text()
    assert "svc-challenge " + m.cfg["meter_id"] in txt, txt   # the entering line was the gate's svc
    assert "REPL closed" in txt and "back to sleep" in txt, txt
    # metered on its own loop the whole time: 600 L/h is 1 L every 6 s
    assert m.volume.ml() >= ml0 + (batservice.GATE_S // 6 - 1) * 1000, m.volume.ml()
    # every ms awake is in the cell's count, at the CPU's 40 mA
    assert m.cell.used - used0 >= took * power.CPU_MA - power.CPU_MA * batservice.STEP_MS, (
        m.cell.used - used0, took)
    assert _mode_events(m) == [1, 0]
    assert not [e for e in m.log.recent(60) if e[2] == codes.EV_SERVICE_OPEN]
    # then the wake of every power-on: it deep-sleeps
    wake.cycle(m, hw)
    assert plant.sleep_ms > 0


def test_an_office_token_opens_the_repl_capped_and_the_window_ends_in_a_reset():
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    line = Line(hw.clock, [(1, "svc"), (5, _answer(120))])
    s = _offer(m, hw, line)
    assert s is not None, line.text()
    assert s.open_request == batservice.OPEN_MAX_MIN, s.open_request   # 120 asked, 30 given
    out = []
    service._p = out.append
    service.set_k(2, 1)                    # guarded: allowed in an office-opened session
    assert m.volume.k_num == 2, out
    ml0, t0 = m.volume.ml(), hw.clock.now_ms()

    def run():
        for _ in range(40 * 60):
            hw.clock.advance(1000)
            s.ticker.tick()
    raises(Reset, run)
    took = hw.clock.now_ms() - t0
    assert 29 * 60_000 <= took <= 31 * 60_000, took
    assert m.volume.ml() > ml0
    assert _mode_events(m) == [1, 0]
    opened = [e[3] for e in m.log.recent(60) if e[2] == codes.EV_SERVICE_OPEN]
    assert opened == [30, 0], opened
    # the reset's wake is an ordinary one: it sleeps
    m2, hw2 = build(plant, d, production=True)
    assert hw2.wake_reason == "reset", hw2.wake_reason
    assert batservice.offer(m2, hw2, True, console=Line(hw2.clock, [])) is None
    assert m2.cell.used >= m.cell.used - power.CPU_MA * batservice.STEP_MS   # the count was saved
    wake.cycle(m2, hw2)


def test_a_cell_changed_in_the_opened_mode_restarts_the_count_once_confirmed():
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    m.cell.used = 5 * 3600 * 1_000_000          # 5 Ah of the old cell counted
    out = []
    service._p = out.append
    s = _offer(m, hw, Line(hw.clock, [(1, "svc")]))
    assert s is None and m.cell.used > 0         # unanswered: no REPL, nothing to type it at
    plant.brown_out()
    m, hw = _power_on(plant, d)
    m.cell.used = 5 * 3600 * 1_000_000
    s = _offer(m, hw, Line(hw.clock, [(1, "svc"), (3, _answer(20))]))
    assert s is not None
    service.cell_fitted()
    assert m.cell.used > 0 and "confirm with the meter id" in out[-1], out
    service.cell_fitted(m.cfg["meter_id"])
    assert m.cell.used == 0 and "accepted" in out[-1], out
    assert [e[3] for e in m.log.recent(20) if e[2] == codes.EV_LOW_BATTERY][-1] == 100


def test_done_ends_the_mode_at_once():
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    s = _offer(m, hw, Line(hw.clock, [(1, "svc"), (3, _answer(20))]))
    assert s is not None
    t0 = hw.clock.now_ms()
    raises(Reset, service.done)
    assert hw.clock.now_ms() == t0
    assert _mode_events(m) == [1, 0]


def test_entries_a_day_are_bounded_and_a_pulled_cell_gives_none_back():
    plant, d = Plant(), fresh_dir("bs")
    for _ in range(batservice.PER_DAY):
        m, hw = _power_on(plant, d)
        assert _offer(m, hw, Line(hw.clock, [(1, "svc")])) is None
        plant.brown_out()                  # the customer pulls the cell and puts it back
    m, hw = _power_on(plant, d)
    t0 = hw.clock.now_ms()
    line = Line(hw.clock, [(0, "svc")])
    assert _offer(m, hw, line) is None
    assert hw.clock.now_ms() == t0, "a spent day does not even listen"
    assert "again tomorrow" in line.text() and "svc-challenge" not in line.text(), line.text()
    # a record the customer cannot read counts as a full day, and so does a
    # clock set back; the next day by the meter's clock it is offered again
    with open(d + "/svcmode", "w") as f:
        f.write("x")
    day = batservice._day(m)
    assert batservice.entries(d, day) == (day, batservice.PER_DAY)
    assert batservice.entries(d, day - 3) == (day - 3, batservice.PER_DAY)
    batservice._record(d, day, batservice.PER_DAY)
    assert batservice.entries(d, day - 3) == (day, batservice.PER_DAY)
    assert batservice.entries(d, day + 1) == (day + 1, 0)


def test_a_power_on_without_svc_listens_briefly_and_other_wakes_never():
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    used0, t0 = m.cell.used, hw.clock.now_ms()
    junk = Line(hw.clock, [(0, "\x03"), (0.2, "svc-open 30 " + "00" * 64), (0.4, "import os"),
                           (0.6, "svc x"), (1.0, "help()"), (batservice.LISTEN_MS / 1000 + 0.1, "svc")])
    assert _offer(m, hw, junk) is None
    assert hw.clock.now_ms() - t0 <= batservice.LISTEN_MS + 100
    assert m.cell.used - used0 >= batservice.LISTEN_MS * power.CPU_MA - 100 * power.CPU_MA
    assert _mode_events(m) == [] and "svc-challenge" not in junk.text()
    plant.deepsleep(wake.work(m, hw))
    # a timer, ULP or button wake: no listening at all, whatever is held or typed
    plant.hold_button(True)
    m, hw = build(plant, d, production=True)
    assert hw.wake_reason != "power"
    line = Line(hw.clock, [(0, "svc")])
    assert batservice.offer(m, hw, True, console=line) is None
    assert line.printed == [] and _mode_events(m) == []


def test_main_boot_listens_at_a_power_on_and_then_sleeps_as_every_wake():
    # the boot path itself (main.boot on the battery board), the serial line
    # this process's stdin, on which nobody types svc
    import main
    from ulpkit import binary
    plant, d = Plant(), fresh_dir("bs")
    m = main.boot("unix_battery", state_dir=d, plant=plant, ulp_binary=binary())
    assert plant.sleep_ms > 0 and plant.boots == 1
    assert plant.awake_ms >= batservice.LISTEN_MS, plant.awake_ms
    assert m.cell.used >= batservice.LISTEN_MS * power.CPU_MA
    assert _mode_events(m) == []


def test_a_failure_in_the_mode_goes_back_to_sleep():
    import techsession
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)

    def broken(self, **kw):
        raise ValueError("a bug in the gate")
    old = techsession.Session.gate
    techsession.Session.gate = broken
    try:
        assert _offer(m, hw, Line(hw.clock, [(1, "svc")])) is None
    finally:
        techsession.Session.gate = old
    assert not hw.ticker.running
    assert [e[3] for e in m.log.recent(20) if e[2] == codes.EV_INTERNAL] == [3]
    assert _mode_events(m) == [1, 0]
    wake.cycle(m, hw)
    assert plant.sleep_ms > 0


def test_an_entry_that_cannot_be_recorded_is_refused_and_the_meter_sleeps():
    import os
    plant, d = Plant(), fresh_dir("bs")
    m, hw = _power_on(plant, d)
    os.mkdir(d + "/svcmode.new")               # the record's write fails (a full or damaged flash)
    line = Line(hw.clock, [(1, "svc")])
    assert _offer(m, hw, line) is None
    assert "svc-challenge" not in line.text() and _mode_events(m) == []
    assert [e[3] for e in m.log.recent(20) if e[2] == codes.EV_INTERNAL] == [3]
    wake.cycle(m, hw)
    assert plant.sleep_ms > 0
