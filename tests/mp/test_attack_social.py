# Attacks on the social tariffs (docs/SECURITY.md "History and social
# tariffs", H8 and H9): friendly-hours debt under a recovery rule, and a
# clock stopped by power cuts then set forward to skip minimum charges.
import boards
import codes
import main
from simkit import make_meter, run

DR = {"v": 1, "at": 0, "b": [[10, 300_000], [0, 900_000]], "sc": 0, "dr": [10, 0]}
Y2000 = 946684800
T0 = 1767225600 + 9 * 3600     # 2026-01-01 09:00 UTC; periods end on the 1st
MC = 5_000_000                 # minimum charge 50.00
MC_TARIFF = {"v": 1, "at": 0, "b": [[0, 1_000_000]], "sc": 10_000, "mc": MC}


def test_attack_tiny_top_ups_under_a_recovery_rule_do_not_reset_the_friendly_debt_cap():
    # Each top-up moves the negative balance into the debt register; the cap
    # counts that part too, so ten top-ups of 0.10 buy 1.00 of water plus
    # one cap of friendly credit, not a fresh cap each time.
    m, hw = make_meter(reopen="auto", tariff=DR, friendly_hours=[0, 24], friendly_days=[],
                       max_balance=10 ** 9, max_topup=10 ** 9)
    cap = m.cfg["friendly_debt_max"]
    hw.world.flow.set_rate_lph(1000)
    paid = 0
    for seq in range(1, 11):
        assert m.apply_credit("card", 1, seq, 10_000) == codes.ACCEPTED   # 0.10 each
        paid += 10_000
        run(m, hw, 3600, 10_000)            # water on all hour, friendly all day
        assert not m.want_open, seq         # closed at the cap inside friendly hours
        assert m.owed_friendly() >= cap
    one_poll = 1000 * 10 * 900_000 // 3600 // 1000     # 10 s at 1 m3/h at the dear block
    assert m.charged <= paid + cap + 10 * one_poll, (m.charged, paid, cap)
    assert m.debt_friendly <= cap + one_poll and m.debt <= cap + one_poll


def test_friendly_part_is_repaid_first_and_arrears_do_not_take_friendly_hours_away():
    m, hw = make_meter(reopen="auto", tariff=DR, friendly_hours=[0, 24], friendly_days=[],
                       max_balance=10 ** 9, max_topup=10 ** 9)
    cap = m.cfg["friendly_debt_max"]
    assert m.add_arrears(10 * cap, 1) == codes.ACCEPTED     # office arrears far above the cap
    assert m.apply_credit("card", 1, 1, 10_000) == codes.ACCEPTED
    hw.world.flow.set_rate_lph(1000)
    run(m, hw, 600, 10_000)
    assert m.balance < 0 and m.want_open       # arrears alone leave friendly credit open
    run(m, hw, 7200, 10_000)
    assert not m.want_open and m.owed_friendly() >= cap
    owed = m.debt_friendly + max(0, -m.balance)
    assert m.apply_credit("card", 1, 2, 1_000_000) == codes.ACCEPTED   # 10.00, 1.00 repays
    assert m.debt_friendly == owed - 100_000   # the friendly part first
    assert m.debt == 10 * cap - 1_000 + owed - 100_000   # seq 1 repaid 0.01 of the arrears
    # the state keeps the friendly part across a reboot
    m2 = main.assemble(boards.load("unix").build(state_dir=hw.state_dir), dict(m.cfg))
    assert m2.debt_friendly == m.debt_friendly and m2.debt == m.debt


def _stopped_clock_meter():
    m, hw = make_meter(tariff=MC_TARIFF, reopen="auto", max_balance=10 ** 9, max_topup=10 ** 9,
                       board_opts={"start": T0, "valve_open": True})
    m.apply_credit("card", 1, 1, 100_000_000)
    for _ in range(30):       # 90 real days, powered one in three: the clock gains 30
        run(m, hw, 86400, 600_000)
        hw = boards.load("unix").build(state_dir=hw.state_dir, start=Y2000, valve_open=True)
        m = main.assemble(hw, dict(m.cfg))
    assert not m.clock_trusted and m.charged < MC   # no period end seen on the meter's clock
    return m, hw


def test_attack_a_trusted_time_after_a_stopped_clock_bills_every_missed_minimum_charge():
    m, hw = _stopped_clock_meter()
    before = m.charged
    seq = m.history.last_m[0] if m.history.last_m else 0
    assert m.set_time(T0 + 90 * 86400) == codes.ACCEPTED   # 2026-04-01 09:00: Feb 1, Mar 1, Apr 1 passed
    run(m, hw, 600, 60_000)
    # every period end pays its minimum charge (the first one's charges so
    # far count towards it), and only those plus 10 minutes of standing charge
    assert 3 * MC <= m.charged < 3 * MC + 10_000, (before, m.charged)
    assert m.history.last_m[0] == seq + 3        # three monthly records frozen
    assert [r[7] for r in m.history.records("m", 0, 40)][:3] == [MC] * 3   # each in the ring


def test_a_jump_over_more_periods_than_the_cap_closes_the_cap_and_says_how_many_it_passed():
    m, hw = make_meter(tariff=MC_TARIFF, max_balance=10 ** 9, max_topup=10 ** 9,
                       board_opts={"start": T0, "valve_open": True})
    m.apply_credit("card", 1, 1, 100_000_000)
    run(m, hw, 60, 60_000)
    m.set_time(T0 + 731 * 86400)           # 2028-01-02: 24 period ends passed
    run(m, hw, 60, 60_000)
    assert 12 * MC <= m.charged < 13 * MC, m.charged   # 12 closed, the open one not yet
    ev = [e[3] for e in m.log.recent(60) if e[2] == codes.EV_PERIOD_ROLLOVER]
    assert ev == [0] * 12 + [12], ev
    assert len(list(m.history.records("m", 0, 40))) == 12
