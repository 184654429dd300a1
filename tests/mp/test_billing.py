# Billing: a period's charge is a function of the period's volume; tariff
# changes and period rollovers never re-price water already drawn.
import codes
from metering import tariff
from metering.billing import Billing
from simkit import make_meter, run

T0 = 1767225600
BLOCKS = {"v": 1, "b": [[10, 300_000], [0, 900_000]]}


def _t(d):
    return tariff.parse(d)[1]


def test_steps_sum_to_the_function_of_total_volume():
    t = _t(BLOCKS)
    one = Billing(t, T0, 0)
    many = Billing(t, T0, 0)
    total = 0
    ml = 0
    for i in range(1, 4001):
        ml += 7                       # 7 mL steps: every one rounds on its own
        total += many.step(ml, T0)
    assert total == one.step(ml, T0) == t.charge(ml)
    assert total == (10_000 * 300_000 + 18_000 * 900_000) // 1_000_000


def test_tariff_change_prices_only_later_water():
    old = _t(BLOCKS)
    new = _t({"v": 2, "b": [[10, 600_000], [0, 1_800_000]]})
    b = Billing(old, T0, 0)
    charged = b.step(8_000, T0 + 10)                  # 8 L at the old price
    charged += b.change_tariff(new, 8_000, T0 + 20)
    charged += b.step(12_000, T0 + 30)                # 2 L in block 1, 2 L in block 2, new prices
    assert charged == 2_400 + 1_200 + 3_600


def test_period_rollover_restarts_the_blocks():
    t = _t(BLOCKS)
    b = Billing(t, T0, 0)
    c = b.step(15_000, T0 + 10)                       # 10 L low + 5 L high
    c += b.roll_period(15_000, T0 + 20)
    c += b.step(20_000, T0 + 30)                      # 5 L at the low block again
    assert c == 3_000 + 4_500 + 1_500


def test_standing_charge_in_segments():
    t = _t({"v": 1, "b": [[0, 0]], "sc": 86_400})     # 1 unit per second
    b = Billing(t, T0, 0)
    c = 0
    for s in range(1, 101):
        c += b.step(0, T0 + s)
    assert c == 100


def test_staged_tariff_activates_at_its_time_on_the_meter():
    m, hw = make_meter(reopen="auto", tariff={"v": 1, "at": 0, "b": [[0, 100_000]], "sc": 0})
    m.apply_credit("card", 1, 1, 50_000_000)
    now = hw.clock.time()
    assert m.stage_tariff({"v": 2, "at": now + 600, "b": [[0, 1_000_000]], "sc": 0}) == codes.ACCEPTED
    assert m.billing.tariff.version == 1
    hw.world.flow.set_rate_lph(1800)                  # 0.5 L/s, K=1 (below the burst limit)
    run(m, hw, 600)
    assert m.billing.tariff.version == 2
    before = m.balance
    run(m, hw, 100)
    spent_after = before - m.balance
    # 300 L at 100 000/m3, then 50 L at 1 000 000/m3
    assert 50_000_000 - before == 30_000
    assert spent_after == 50_000
    assert m.stage_tariff({"v": 2, "at": 0, "b": [[0, 1]], "sc": 0}) == codes.USED
    assert m.stage_tariff({"v": 1, "at": 0, "b": [[0, 1]], "sc": 0}) == codes.OLD
    assert m.stage_tariff({"v": 9, "at": 0, "b": [[5, 1]], "sc": 0}) == codes.RANGE
    assert m.billing.tariff.version == 2


def test_period_rolls_over_on_the_configured_day():
    m, hw = make_meter(period_day=2, tariff={"v": 1, "b": [[10, 100_000], [0, 1_000_000]]})
    m.apply_credit("card", 1, 1, 50_000_000)
    m.confirm()
    hw.world.flow.set_rate_lph(36)                    # 36 L/h
    run(m, hw, 3600, 60_000)                          # an hour: 36 L, 26 of them at the high block
    assert m.billing.period_ml(m.volume.ml()) == 36_000
    run(m, hw, 86_400 - 3600, 60_000)                 # to 2026-01-02 00:00: rollover
    assert m.billing.period_ml(m.volume.ml()) < 36_000
    assert any(e[2] == codes.EV_PERIOD_ROLLOVER for e in m.log.recent(50))
