# Attacks on the frozen registers and the social tariffs (docs/SECURITY.md
# "History and social tariffs").
import codes
from simkit import make_meter
from storage import history as hist

H = 3600


def _meter(**social):
    t = {"v": 1, "at": 0, "b": [[0, 1_000_000]], "sc": 0}
    t.update(social)
    m, hw = make_meter(reopen="auto", tariff=t, max_balance=10 ** 9, max_topup=10 ** 9)
    m.apply_credit("card", 1, 1, 100_000_000)
    return m, hw


def _draw(m, hw, litres):
    hw.world.flow.pour(litres * 1000, 600)
    for _ in range(litres * 6 + 6):          # 600 L/h: 10 s per litre
        hw.clock.advance(1000)
        m.poll()


def test_attack_clock_set_back_over_midnight_gives_no_second_allowance_or_record():
    m, hw = _meter(fd=[10, 0])              # 10 L a day free, renewed at midnight
    hw.clock.advance(23 * H * 1000)
    m.poll()
    _draw(m, hw, 10)                        # today's allowance used up
    paid = m.charged
    hw.clock.advance(2 * H * 1000)          # past midnight: a record, a fresh allowance
    m.poll()
    assert m.history.newest("d") == 1
    _draw(m, hw, 10)
    assert m.charged == paid, "the new day's 10 L were free"
    # the technician's clock is set back before midnight, and forward again
    now = hw.clock.time()
    assert m.set_time(now - 3 * H) == codes.ACCEPTED
    m.poll()
    _draw(m, hw, 5)
    assert m.charged == paid + 5_000, "no allowance renewed by the step back"
    assert m.set_time(now + 60) == codes.ACCEPTED
    m.poll()
    _draw(m, hw, 5)
    assert m.charged == paid + 10_000
    assert m.history.newest("d") == 1, "no day frozen twice"
    assert sum(r[7] for r in m.history.records("d")) + m.history.today()["chg"] == m.charged


def test_attack_edited_past_record_without_its_crc_is_refused():
    m, hw = _meter()
    hw.world.flow.set_rate_lph(5)
    for _ in range(3 * 24):
        hw.clock.advance(H * 1000)
        m.poll()
    path = hw.state_dir + "/hist_d.bin"
    with open(path, "r+b") as f:            # record 2's volume lowered, CRC left
        f.seek(2 * 56 + 20)
        f.write(b"\x00\x00\x00\x00")
    assert hist.Ring(path, hist.DAYS, ord("D")).read(2) is None
    assert [r[0] for r in m.history.records("d")] == [3, 1], "the gap shows, no altered value"


def test_attack_clock_set_back_over_a_period_end_closes_it_once():
    m, hw = _meter(mc=2_000_000)
    m.cfg["period_day"] = 2
    m.period_end = 1767225600 + 86400       # 2026-01-02 00:00, as period_day 2 gives
    hw.clock.advance(25 * H * 1000)
    m.poll()
    assert m.history.newest("m") == 1
    charged = m.charged
    now = hw.clock.time()
    m.set_time(now - 2 * H)                 # back before the period end
    m.poll()
    m.set_time(now + 60)
    m.poll()
    assert m.history.newest("m") == 1, "the period closed twice"
    assert m.charged == charged, "a second minimum charge"
