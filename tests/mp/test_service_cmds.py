# Service commands on a simulated meter, driven on the virtual clock through
# a ManualTicker (the same Session.tick the background ticker calls).
import asyncio

import codes
import config
import main
import service
from boards.ticker import ManualTicker
from simkit import make_meter

HEAP = "512K"


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, *a):
        self.lines.append(" ".join(str(x) for x in a))

    def text(self):
        return "\n".join(self.lines)

    def clear(self):
        self.lines = []


def _setup(board_opts=None, secrets=None, **cfg):
    # a fresh event loop: earlier tests' tasks must not run here
    asyncio.new_event_loop()
    opts = {"k": (100, 1)}                  # 100 pulses/L: enough resolution for tests
    opts.update(board_opts or {})
    cfg.setdefault("k", [100, 1])
    cfg.setdefault("reopen", "auto")
    meter, hw = make_meter(board_opts=opts, **cfg)
    if secrets is not None:
        import json
        with open(hw.state_dir + "/secrets.json", "w") as f:
            json.dump(secrets, f)
    main.spawn(meter, hw)
    t = ManualTicker()
    s = service.attach(meter, hw, None, "test", t)
    s.background()
    out = Out()
    service._p = out
    return meter, hw, s, t, out


def _ticks(t, n):
    for _ in range(n):
        t.tick()


def _run(t, hw, seconds):
    """Tick until `seconds` of virtual time have passed (bounded)."""
    end = hw.clock.now_ms() + seconds * 1000
    for _ in range(seconds * 10 + 10):
        if hw.clock.now_ms() >= end:
            return
        t.tick()
    raise AssertionError("the tick does not advance the clock")


def test_status_fits_80_columns_and_shows_state():
    meter, hw, s, t, out = _setup()
    assert meter.apply_credit("t", 1, 1, 2_000_000) == codes.ACCEPTED
    hw.world.flow.set_rate_lph(360)     # 0.1 L/s
    _run(t, hw, 30)                     # 30 virtual seconds of metering
    service.status()
    txt = out.text()
    assert all(len(ln) <= 80 for ln in out.lines), txt
    assert 8 <= len(out.lines) <= 24, txt
    assert "M000001" in txt and "fw test" in txt
    assert "Credit" in txt and "Volume" in txt and "Valve" in txt and "Network" in txt
    assert meter.volume.ml() >= 2500, meter.volume.ml()   # the tick really metered


def test_metering_goes_on_between_commands_and_session_saves():
    meter, hw, s, t, out = _setup()
    meter.apply_credit("t", 1, 1, 2_000_000)
    gen0 = meter.store.generation
    hw.world.flow.set_rate_lph(3600)    # 1 L/s
    _run(t, hw, 12)
    assert meter.volume.ml() >= 10_000, meter.volume.ml()
    assert meter.store.generation > gen0   # saved during the session (every 5 s of flow)
    bal = meter.balance
    _run(t, hw, 10)
    assert meter.balance < bal            # billing goes on


def test_hold_blocks_the_tick():
    meter, hw, s, t, out = _setup()
    hw.world.flow.set_rate_lph(3600)
    with t.hold():
        _ticks(t, 5)
    assert t.skipped == 5 and t.ticks == 0
    _ticks(t, 3)
    assert t.ticks == 3


def test_log_shows_names_and_results():
    meter, hw, s, t, out = _setup()
    meter.apply_credit("t", 1, 1, 2_000_000)
    meter.apply_credit("t", 1, 2, 10 ** 9)   # over the limit
    service.log(5)
    txt = out.text()
    assert "credit " in txt and "20.00" in txt, txt
    assert "credit-rejected" in txt and "over-limit" in txt, txt
    assert all(len(ln) <= 80 for ln in out.lines)


def test_cfg_get_set_validated_and_persisted():
    meter, hw, s, t, out = _setup()
    assert service.cfg("low1") == config.DEFAULTS["low1"]
    service.cfg("low1", "lots")
    assert "refused" in out.text() and meter.cfg["low1"] == config.DEFAULTS["low1"]
    out.clear()
    service.cfg("low2", 2_000_000)           # above low1
    assert "refused" in out.text()
    out.clear()
    service.cfg("tariff", {"v": 9})
    assert "read-only" in out.text()
    out.clear()
    service.cfg("low1", 1_500_000)
    assert "saved" in out.text(), out.text()
    assert meter.cfg["low1"] == 1_500_000
    assert config.load(hw.state_dir)["low1"] == 1_500_000
    assert meter.log.recent(1)[0][2] == codes.EV_CONFIG


def test_guarded_commands_need_the_pin():
    import pinkdf
    salt = "5a17" * 4
    sec = {"svc_pin": pinkdf.record(bytes.fromhex(salt), "4711", 1000), "svc_salt": salt}
    meter, hw, s, t, out = _setup(secrets=sec)
    service.cfg("period_day", 5)
    assert "locked" in out.text() and meter.cfg["period_day"] == 1
    out.clear()
    service.unlock("0000")
    service.unlock("1111")
    service.unlock("2222")
    assert "locked out" in out.text(), out.text()
    out.clear()
    service.unlock("4711")                  # right PIN, but inside the lockout
    assert "locked out" in out.text()
    hw.clock.advance(31_000)
    out.clear()
    service.unlock("4711")
    assert "unlocked" in out.text(), out.text()
    service.cfg("period_day", 5)
    assert meter.cfg["period_day"] == 5
    auth = [e for e in meter.log.recent(20) if e[2] == codes.EV_SERVICE_AUTH]
    assert [e[3] for e in auth] == [1, 2, 3, 0], auth
    hw.clock.advance(16 * 60 * 1000)        # the unlock runs out
    out.clear()
    service.cfg("period_day", 6)
    assert "locked" in out.text() and meter.cfg["period_day"] == 5


def test_production_meter_without_pin_refuses_guarded():
    meter, hw, s, t, out = _setup(production=True)
    service.set_k(2, 1)
    assert "refused" in out.text()
    assert (meter.volume.k_num, meter.volume.k_den) == (100, 1)


def test_calibration_in_steps():
    # the sensor really gives 450 pulses/L; the meter believes 400
    meter, hw, s, t, out = _setup(board_opts={"k": (450, 1)}, k=[400, 1])
    meter.apply_credit("t", 1, 1, 5_000_000)
    _run(t, hw, 3)                          # valve open, nothing flowing
    service.cal_start(10)
    hw.world.flow.set_rate_lph(360)         # 0.1 L/s: exactly 10 L in 100 s
    hw.clock.advance(100_000)
    hw.world.flow.set_rate_lph(0)
    _run(t, hw, 3)                          # the meter folds the pulses in
    assert abs(hw.world.flow.delivered_ml() - 10_000) <= 3
    out.clear()
    new = service.cal_stop()
    txt = out.text()
    assert new is not None, txt
    assert abs(new[0] * 1000 // new[1] - 450_000) <= 450, (new, txt)   # within 0.1 %
    assert "error +12." in txt, txt        # 400 vs 450: the meter over-read by 12.5 %
    ml_before = meter.volume.ml()
    service.cal_apply()
    assert (meter.volume.k_num, meter.volume.k_den) == new
    assert meter.volume.ml() == ml_before  # volume so far is kept
    assert any(e[2] == codes.EV_KFACTOR for e in meter.log.recent(5))


def test_calibration_guards_its_inputs():
    meter, hw, s, t, out = _setup()
    service.cal_stop()
    assert "no run" in out.text()
    service.cal_start(0)
    assert "litres" in out.text()
    service.cal_start(5)
    out.clear()
    service.cal_stop()                      # no water flowed
    assert "no pulses" in out.text()


def test_time_set_logs_the_step():
    meter, hw, s, t, out = _setup()
    t0 = meter.clock.time()
    service.time_set(2026, 3, 14, 9, 30, 0)
    assert meter.clock.time() - 1773480600 in (0, 1)
    ev = meter.log.recent(1)[0]
    assert ev[2] == codes.EV_TIME_SET and ev[3] == 1773480600 - t0
    out.clear()
    service.time_set(1999, 1, 1)
    assert "between" in out.text()


def test_selftest_reports_each_part():
    meter, hw, s, t, out = _setup()
    fails = service.selftest()
    txt = out.text()
    for part in ("card reader", "valve", "flash", "clock", "network", "broker"):
        assert part in txt, txt
    assert "flash        PASS" in txt and "clock        PASS" in txt, txt
    assert fails == txt.count("FAIL"), txt


def test_factory_reset_keeps_money_volume_and_keys():
    meter, hw, s, t, out = _setup(secrets={"mk": "00" * 16})
    meter.apply_credit("t", 1, 1, 3_000_000)
    hw.world.flow.set_rate_lph(3600)
    _run(t, hw, 5)
    service.cfg("low1", 2_000_000)
    service.cfg("reopen", "auto")
    bal, ml = meter.balance, meter.volume.ml()
    service.factory_reset("wrong")
    assert meter.cfg["reopen"] == "auto"
    service.factory_reset("M000001")
    assert meter.cfg["reopen"] == "confirm" and meter.cfg["low1"] == config.DEFAULTS["low1"]
    assert meter.balance == bal and meter.volume.ml() == ml
    assert config.load(hw.state_dir)["reopen"] == "confirm"
    assert service.load_secrets(hw.state_dir) == {"mk": "00" * 16}
    assert meter.apply_credit("t", 1, 1, 3_000_000) == codes.USED   # ledger kept
    assert meter.log.recent(5)[-2][2] == codes.EV_FACTORY_RESET or any(
        e[2] == codes.EV_FACTORY_RESET for e in meter.log.recent(5))


def test_help_lists_every_command_in_80_columns():
    meter, hw, s, t, out = _setup()
    service.help()
    txt = out.text()
    for name in ("status", "log", "card", "valve_open", "valve_close", "valve_test",
                 "calibrate", "set_k", "time_set", "cfg", "selftest", "factory_reset",
                 "unlock", "reboot", "done", "cell_fitted"):
        assert name + "(" in txt, name
        assert callable(getattr(service, name))
    assert all(len(ln) <= 80 for ln in out.lines)
    out.clear()
    service.help(service.status)
    assert len(out.lines) == 1 and "status()" in out.text()


def test_history_lists_the_frozen_days_and_alarms():
    meter, hw, s, t, out = _setup()
    meter.apply_credit("t", 1, 1, 50_000_000)
    hw.world.flow.set_rate_lph(10)
    for _ in range(3 * 48):                 # three days, a poll every 30 minutes
        hw.clock.advance(1_800_000)
        meter.poll()
    service.history("d", 5)
    lines = out.lines
    assert lines[0].startswith("today "), out.text()
    recs = list(meter.history.records("d", 0, 5))
    assert len(recs) == 3 and len(lines) == 4
    for ln, r in zip(lines[1:], recs):
        assert ln.split()[0] == str(r[0]) and service.money(r[7]) in ln and service.m3(r[5]) in ln
    out.clear()
    service.history("a")
    assert out.lines[0] == "latched: none" and len(out.lines) == 7, out.text()
