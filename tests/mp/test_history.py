# Frozen history registers: exact daily and monthly records, read back from
# flash, power-safe, with alarm hour counters and a latch.
import os

import codes
import main
from boards.unix.pins import SimPin, IN, PULL_UP
from simkit import make_meter, make_cfg, run
from storage import history as hist

DAY = 86400
CREDIT = 800_000_000


def _meter(**cfg):
    cfg.setdefault("tariff", {"v": 1, "b": [[5, 310_000], [0, 930_000]], "sc": 41_000})
    m, hw = make_meter(reopen="auto", leak_close=False, burst_close=False, max_balance=10 ** 9,
                       max_topup=10 ** 9, period_day=3, tz=3600, **cfg)
    assert m.apply_credit("card", 1, 1, CREDIT) == codes.ACCEPTED
    return m, hw


def _days(m):
    return list(m.history.records("d", n=200))[::-1]


def _drive(m, hw, days, tariffs=()):
    """Poll every 30 minutes for `days`, with a flow that changes every
    few hours and tariffs staged on given days. Checks each record as it is
    frozen against the meter at that poll."""
    flow = hw.world.flow
    seen = m.history.newest("d")
    steps = days * 48
    rates = (0, 20, 55, 0, 7, 130, 0, 0, 33)
    for i in range(steps):
        if i % 5 == 0:
            flow.set_rate_lph(rates[(i // 5) % len(rates)])
        for day, t in tariffs:
            if i == day * 48 + 17:
                assert m.stage_tariff(t) == codes.ACCEPTED
        hw.clock.advance(1_800_000)
        m.poll()
        if m.history.newest("d") != seen:
            seen = m.history.newest("d")
            r = dict(zip(hist.KEYS, m.history.record("d", seen)))
            # frozen at the poll that crossed midnight: the registers then
            assert r["ml"] == m.volume.ml() and r["bal"] == m.balance and r["tc"] == m.charged
            assert (r["t"] + 3600) % DAY == 0, "a daily record is at local midnight"


def test_daily_and_monthly_sum_to_the_registers_over_a_long_run():
    m, hw = _meter()
    ml0 = m.volume.ml()
    tariffs = [(20, {"v": 2, "at": 0, "b": [[3, 333_333], [0, 777_779]], "sc": 77_777}),
               (51, {"v": 3, "at": 0, "b": [[0, 555_557]], "sc": 0})]
    _drive(m, hw, 93, tariffs)
    assert m.billing.tariff.version == 3
    days = _days(m)
    assert len(days) == 93 and [r[0] for r in days] == list(range(1, 94))
    months = list(m.history.records("m", n=50))[::-1]
    assert len(months) == 4                            # Jan 3, Feb 3, Mar 3, Apr 3 (local)
    spent = CREDIT - m.balance                         # the money's own account
    k = hist.KEYS.index
    # the sum of the daily volumes is the register's change, the sum of the
    # daily charges is what was deducted: exactly, to the mL and the unit
    assert sum(r[k("dml")] for r in days) + m.history.today()["ml"] == m.volume.ml() - ml0
    assert sum(r[k("chg")] for r in days) + m.history.today()["chg"] == spent
    assert sum(r[k("chg")] for r in months) + m.history.month()["chg"] == spent
    assert sum(r[k("dml")] for r in months) + m.history.month()["ml"] == m.volume.ml() - ml0
    # each closed period is the sum of its days (periods end at a midnight)
    for mo in months[1:]:
        inside = [d for d in days if months[months.index(mo) - 1][1] < d[1] <= mo[1]]
        assert sum(d[k("chg")] for d in inside) == mo[k("chg")]
        assert sum(d[k("dml")] for d in inside) == mo[k("dml")]
    # a day's charge, standing charge included, is positive and each record
    # follows on from the one before
    for a, b in zip(days, days[1:]):
        assert b[k("ml")] - b[k("dml")] == a[k("ml")] and b[k("tc")] - b[k("chg")] == a[k("tc")]
        assert b[k("bal")] == a[k("bal")] - b[k("chg")]
        assert b[k("chg")] > 0


def test_records_read_back_from_flash_after_a_restart():
    m, hw = _meter()
    _drive(m, hw, 5)
    before = _days(m)
    today = m.history.today()
    m.save()
    m2 = main.assemble(hw, make_cfg(**m.cfg))
    assert _days(m2) == before
    assert m2.history.today() == today
    # read from the ring file itself, not the RAM copy of the newest
    ring = hist.Ring(hw.state_dir + "/hist_d.bin", hist.DAYS, ord("D"))
    assert [ring.read(r[0]) for r in before] == before


def test_the_ring_keeps_96_days_and_pages_newest_first():
    m, hw = _meter(tariff={"v": 1, "b": [[0, 350_000]], "sc": 0})
    _drive(m, hw, 101)
    days = _days(m)
    assert [r[0] for r in days] == list(range(6, 102))     # the 5 oldest were overwritten
    page = list(m.history.records("d", n=8))
    assert [r[0] for r in page] == list(range(101, 93, -1))
    page2 = list(m.history.records("d", before=page[-1][0], n=8))
    assert [r[0] for r in page2] == list(range(93, 85, -1))
    assert os.stat(hw.state_dir + "/hist_d.bin")[6] == hist.DAYS * 56


def test_a_torn_or_missing_newest_record_is_written_again_from_the_state():
    m, hw = _meter()
    _drive(m, hw, 4)
    newest = m.history.record("d", 4)
    path = hw.state_dir + "/hist_d.bin"
    with open(path, "r+b") as f:                # a cut in the middle of slot 4's write
        f.seek(4 * 56 + 20)
        f.write(b"\xff" * 10)
    m.save()
    m2 = main.assemble(hw, make_cfg(**m.cfg))
    assert hist.Ring(path, hist.DAYS, ord("D")).read(4) == newest
    os.remove(path)                              # the whole file gone: the newest comes back
    m3 = main.assemble(hw, make_cfg(**m2.cfg))
    assert hist.Ring(path, hist.DAYS, ord("D")).read(4) == newest
    assert m3.history.record("d", 3) is None     # the older ones were only in the file


def test_a_meter_off_over_midnights_freezes_one_record_spanning_them():
    m, hw = _meter()
    _drive(m, hw, 2)
    seq = m.history.newest("d")
    hw.clock.advance(3 * DAY * 1000)
    m.poll()
    r = dict(zip(hist.KEYS, m.history.record("d", seq + 1)))
    assert r["span"] == 3 and m.history.newest("d") == seq + 1


def test_alarm_hours_are_counted_and_latched_until_cleared():
    m, hw = _meter()
    tp = SimPin("tamper", IN, PULL_UP)
    m.detector._tamper = tp
    run(m, hw, 600, 60_000)
    tp.value(0)                                  # case opened
    run(m, hw, 3 * 3600 + 600, 60_000)
    tp.value(1)
    run(m, hw, 600, 60_000)
    i = hist.ALARMS.index("tamper")
    assert m.history.hours()[i] == 3 and m.history.secs[i] >= 3 * 3600
    assert m.history.latched & hist.A_TAMPER and not m.history.active & hist.A_TAMPER
    assert sum(m.history.hours()) == 3, "only the tamper alarm was on"
    m.save()
    m2 = main.assemble(hw, make_cfg(**m.cfg))   # counters and latch are in the state
    assert m2.history.hours()[i] == 3 and m2.history.latched & hist.A_TAMPER
    m2.history.clear_latch()
    assert not m2.history.latched
    _drive(m, hw, 1)
    assert m.history.record("d", m.history.newest("d"))[2] & hist.A_TAMPER  # the day saw it


def _commands(m):
    from comms import codec
    from comms.commands import Commands
    tp = codec.topics(m.cfg["meter_id"], m.cfg["region"])
    key = b"meter-key-for-tests-0123456789ab"
    c = Commands(m.cfg, m, m.clock, tp["c"].encode(), tp["tariff"].encode(), meter_key=key)
    n = [0]

    def ask(**f):
        n[0] += 1
        body = codec.command(n[0], "history", **f)
        return codec.parse_ack(c.handle(tp["c"].encode(), codec.seal(key, tp["c"].encode(), body)), False)
    return ask


def test_history_over_mqtt_pages_back_to_the_first_record():
    m, hw = _meter()
    _drive(m, hw, 20)
    ask = _commands(m)
    got, before = [], 0
    while True:
        a = ask(k="d", b=before) if before else ask(k="d")
        assert a["code"] == codes.ACCEPTED and a["val"] == 20
        if not a["detail"]:
            break
        assert len(a["detail"]) <= 8
        got += a["detail"]
        before = a["detail"][-1][0]
    assert [r[0] for r in got] == list(range(20, 0, -1))
    assert [tuple(r) for r in got] == list(m.history.records("d", n=20))
    a = ask(k="m", c=1)
    assert a["code"] == codes.ACCEPTED and len(a["detail"]) == 1 and a["detail"][0][0] == a["val"]
    a = ask(k="a")
    assert a["code"] == codes.ACCEPTED and a["detail"]["h"] == m.history.hours()
    assert a["detail"]["d"] == m.history.today()
    # field types and ranges through the check table: FORMAT before RANGE
    assert ask(k=1)["code"] == codes.FORMAT
    assert ask(k="d", b="3")["code"] == codes.FORMAT
    assert ask(k="d", c=True)["code"] == codes.FORMAT
    assert ask(k="d", z=1)["code"] == codes.FORMAT
    assert ask()["code"] == codes.FORMAT
    assert ask(k="d", c=9)["code"] == codes.RANGE
    assert ask(k="d", c=0)["code"] == codes.RANGE
    assert ask(k="d", b=-1)["code"] == codes.RANGE
    assert ask(k="x")["code"] == codes.UNKNOWN


def test_reverse_flow_and_low_battery_hours_are_counted_apart():
    m, hw = _meter(batt_low_mv=3300, batt_grace_s=10 ** 6)

    class Battery:
        mv = 3600

        def millivolts(self):
            return self.mv
    bat = Battery()
    m.detector._battery = bat
    flow = hw.world.flow
    flow.set_rate_lph(60)
    run(m, hw, 600, 60_000)
    flow.set_reversed(True)                      # two hours of backflow
    run(m, hw, 2 * 3600, 60_000)
    flow.set_reversed(False)
    bat.mv = 3200                                # then five hours on a low battery
    run(m, hw, 5 * 3600 + 120, 60_000)
    hours = dict(zip(hist.ALARMS, m.history.hours()))
    assert hours["reverse"] == 2 and hours["battery"] == 5, hours
    assert hours["leak"] == hours["burst"] == hours["tamper"] == hours["valve"] == 0
    assert m.history.latched == hist.A_REVERSE | hist.A_BATTERY
    assert m.history.active == hist.A_BATTERY
