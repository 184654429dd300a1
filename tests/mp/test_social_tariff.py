# Social tariffs (docs/METERING.md "Social tariffs"): free basic water
# (monthly volume or a daily allowance), a minimum period charge, and the
# debt register repaid by a share of each top-up and a weekly amount.
import codes
import main
from metering import tariff
from metering.billing import Billing
from simkit import make_meter, make_cfg, run

T0 = 1767225600            # 2026-01-01 00:00 UTC, a Thursday
H = 3600
BASE = {"v": 1, "at": 0, "b": [[10, 300_000], [0, 900_000]], "sc": 0}


def _t(**social):
    code, t = tariff.parse(dict(BASE, **social))
    assert code == codes.ACCEPTED, code
    return t


def test_social_fields_are_validated_and_old_tariffs_keep_their_form():
    assert tariff.parse(BASE)[1].to_dict() == {"v": 1, "at": 0, "b": [[10, 300_000], [0, 900_000]],
                                               "sc": 0, "e": 0}
    for bad in ({"fb": "5"}, {"fb": True}, {"fd": [5]}, {"fd": 5}, {"fd": [5, "6"]}, {"mc": 1.5},
                {"dr": [10]}, {"dr": [10, None]}):
        assert tariff.parse(dict(BASE, **bad)) == (codes.FORMAT, None), bad
    for bad in ({"fb": -1}, {"fb": 1_000_001}, {"fd": [5, 24]}, {"fd": [-1, 6]}, {"mc": -1},
                {"mc": 10 ** 9 + 1}, {"dr": [101, 0]}, {"dr": [10, -5]}, {"dr": [0, 10 ** 8 + 1]}):
        assert tariff.parse(dict(BASE, **bad)) == (codes.RANGE, None), bad
    full = dict(BASE, fb=6, fd=[2, 6], mc=5000, dr=[25, 100_000], e=0)
    assert tariff.parse(full)[1].to_dict() == full      # the state keeps every field


def test_monthly_free_volume_is_charged_at_zero_before_the_blocks():
    t = _t(fb=6)
    assert t.charge(6_000) == 0
    # 6 L free, then the blocks from their start: 10 L at 0.30, 4 L at 0.90
    assert t.charge(20_000) == 10_000 * 300_000 // 10 ** 6 + 4_000 * 900_000 // 10 ** 6
    b = Billing(t, T0, 0)
    got = sum(b.step(ml, T0 + ml) for ml in range(0, 20_001, 7)) + b.step(20_000, T0 + 30_000)
    assert got == t.charge(20_000), "steps sum to the function of the period volume"


def test_daily_allowance_renews_at_its_local_hour():
    t = _t(fd=[2, 6])                       # 2 L a day, renewed at 06:00 local (UTC+1)
    b = Billing(t, T0, 0, 3600)
    c = b.step(5_000, T0 + 2 * H)           # 02:00 local... 5 L, 2 of them free
    assert c == 3_000 * 300_000 // 10 ** 6
    c += b.step(6_000, T0 + 5 * H - 1)      # still the same allowance day
    assert c == 4_000 * 300_000 // 10 ** 6
    c += b.step(7_000, T0 + 5 * H)          # 06:00 local: the 7th litre closes the old day
    assert c == 5_000 * 300_000 // 10 ** 6
    c += b.step(8_500, T0 + 9 * H)          # the new day's first 1.5 L are free
    assert c == 5_000 * 300_000 // 10 ** 6
    c += b.step(10_000, T0 + 10 * H)        # 0.5 L free left, then charged
    assert c == 6_000 * 300_000 // 10 ** 6
    c += b.roll_period(10_000, T0 + 12 * H)   # a period start renews the allowance
    c += b.step(11_000, T0 + 13 * H)
    assert c == 6_000 * 300_000 // 10 ** 6


def test_minimum_charge_tops_a_small_period_up_at_its_end():
    t = _t(mc=50_000)
    b = Billing(t, T0, 0)
    c = b.step(100_000, T0 + 10)            # 10 L at 0.30 + 90 L at 0.90: above the minimum
    c += b.roll_period(100_000, T0 + 20)
    assert c == 3_000 + 81_000
    c2 = b.step(110_000, T0 + 30)           # 10 L at 0.30 = 3000, below 50 000
    c2 += b.roll_period(110_000, T0 + 40)
    assert c2 == 50_000
    assert b.roll_period(110_000, T0 + 50) == 50_000   # a period with no water at all


def test_minimum_charge_on_the_meter_and_in_the_monthly_record():
    m, hw = make_meter(reopen="auto", tariff=dict(BASE, mc=700_000), period_day=2)
    m.apply_credit("card", 1, 1, 5_000_000)
    hw.world.flow.set_rate_lph(1)
    run(m, hw, 26 * H, 600_000)             # past 2026-01-02 00:00: the first period closes
    r = m.history.record("m", 1)
    assert r is not None and r[7] == 700_000, r    # chg: the minimum, though 24 L cost 13 800
    assert m.charged == 5_000_000 - m.balance


def _debt_meter(**social):
    m, hw = make_meter(reopen="auto", tariff=dict(BASE, **social), friendly_hours=[0, 0],
                       friendly_days=[], max_balance=10 ** 9, max_topup=10 ** 9)
    return m, hw


def test_arrears_are_repaid_by_a_share_of_each_top_up_once_per_sequence():
    m, hw = _debt_meter(dr=[25, 0])
    assert m.add_arrears(1_000_000, 1) == codes.ACCEPTED
    assert m.add_arrears(1_000_000, 1) == codes.USED and m.debt == 1_000_000
    assert m.add_arrears(5, 0) == codes.OLD and m.add_arrears(-5, 2) == codes.RANGE
    assert m.apply_credit("card", 1, 1, 2_000_000) == codes.ACCEPTED
    assert (m.balance, m.debt) == (1_500_000, 500_000)
    assert m.apply_credit("card", 1, 2, 4_000_000) == codes.ACCEPTED
    assert (m.balance, m.debt) == (1_500_000 + 3_500_000, 0)   # repays only what is owed
    assert any(e[2] == codes.EV_DEBT and e[3] == -500_000 for e in m.log.recent(20))
    m2 = main.assemble(hw, make_cfg(**m.cfg))
    assert (m2.debt, m2.arrears_seq) == (0, 1)
    assert m2.add_arrears(7, 1) == codes.USED               # the sequence survived the restart


def test_weekly_repayment_takes_only_balance_above_zero():
    m, hw = _debt_meter(dr=[0, 300_000])
    m.add_arrears(1_000_000, 1)
    m.apply_credit("card", 1, 1, 500_000)
    run(m, hw, 60, 60_000)
    assert m.debt_week_end == T0 + 4 * 86400                 # Monday 2026-01-05 00:00
    run(m, hw, 4 * 86400, 3_600_000)
    assert (m.balance, m.debt) == (200_000, 700_000)
    run(m, hw, 7 * 86400, 3_600_000)
    assert (m.balance, m.debt) == (0, 500_000), "never more than the balance"
    assert m.want_open is False or m.balance > 0


def test_friendly_debt_moves_to_the_register_and_a_top_up_restores_water():
    m, hw = _debt_meter(dr=[50, 0])
    m.cfg["friendly_hours"] = [0, 24]             # always friendly: the balance may go negative
    m.apply_credit("card", 1, 1, 100_000)
    hw.world.flow.set_rate_lph(1000)
    run(m, hw, 3600, 10_000)                      # ~1 m3 at up to 0.90: deep in friendly debt
    owed = -m.balance
    assert owed > 0
    m.cfg["friendly_hours"] = [0, 0]
    assert m.apply_credit("card", 1, 2, 2 * owed) == codes.ACCEPTED
    # the debt moved into the register, and half the top-up repaid it
    assert m.debt == 0 and m.balance == owed
    m.add_arrears(3 * owed, 1)
    assert m.apply_credit("card", 1, 3, 2 * owed) == codes.ACCEPTED
    assert (m.debt, m.balance) == (2 * owed, 2 * owed)


def test_social_fields_arrive_in_an_office_signed_region_tariff():
    from commskit import make_link, send, region_tariff
    link, m, hw, b, rt = make_link()
    link.step()
    send(link, b, region_tariff(v=2, at=0, b=[[0, 400_000]], sc=0, fb=6, fd=[1, 5], mc=9,
                                dr=[10, 20]), link.t_tariff)
    run(m, hw, 1)
    t = m.billing.tariff
    assert (t.version, t.free_ml, t.day_free_ml, t.day_reset_h, t.min_charge, t.debt_share,
            t.debt_week) == (2, 6000, 1000, 5, 9, 10, 20)
