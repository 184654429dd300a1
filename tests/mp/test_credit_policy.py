# Credit policy: thresholds, emergency credit, friendly periods, limits,
# reopening after a top-up, and durability before acknowledgement.
import codes
from simkit import make_meter, run

NOT_FRIENDLY = {"friendly_hours": [0, 0], "friendly_days": [], "friendly_dates": []}
PRICE = {"v": 1, "b": [[0, 1_000_000]]}        # 1 000 units per litre


def _events(m, code):
    return [e for e in m.log.recent(64) if e[2] == code]


def test_low_credit_thresholds_raise_events_and_indicators_at_once():
    m, hw = make_meter(reopen="auto", tariff=PRICE, low1=50_000, low2=20_000, **NOT_FRIENDLY)
    m.apply_credit("card", 1, 1, 60_000)
    hw.world.flow.set_rate_lph(3600)           # 1 L/s
    run(m, hw, 11)                             # 11 L: 49 000 left
    assert m.low_level == 1 and len(_events(m, codes.EV_LOW_CREDIT_1)) == 1
    assert hw.led.value() == 1 and hw.buzzer.value() == 0
    run(m, hw, 30)                             # 19 000 left
    assert m.low_level == 2 and len(_events(m, codes.EV_LOW_CREDIT_2)) == 1
    assert hw.buzzer.value() == 1
    run(m, hw, 25)
    assert m.low_level == 3 and not m.want_open
    assert len(_events(m, codes.EV_CREDIT_EXHAUSTED)) == 1
    assert len(_events(m, codes.EV_LOW_CREDIT_1)) == 1      # once per crossing, not per poll


def test_valve_closes_within_one_poll_of_exhaustion():
    m, hw = make_meter(reopen="auto", tariff=PRICE, **NOT_FRIENDLY)
    m.apply_credit("card", 1, 1, 100_000)      # 100 L
    hw.world.flow.set_rate_lph(2500)           # Q3
    run(m, hw, 200)
    assert not m.want_open and hw.world.valve.state == 0
    assert m.balance <= 0
    # 2.5 m3/h is 0.69 L/s: at most one poll (1 s) and the valve travel of overshoot
    assert m.volume.ml() - 100_000 <= 1_000


def test_reopen_waits_for_confirmation_by_default():
    m, hw = make_meter(tariff=PRICE, **NOT_FRIENDLY)
    assert m.cfg["reopen"] == "confirm"
    assert m.apply_credit("card", 1, 1, 10_000) == codes.ACCEPTED
    run(m, hw, 5)
    assert not m.want_open and m.awaiting_confirm
    assert hw.world.valve.state == 0
    assert m.confirm() == codes.ACCEPTED
    assert m.want_open
    hw.clock.advance(200)
    assert hw.world.valve.state == 1


def test_reopen_automatically_when_configured():
    m, hw = make_meter(reopen="auto", tariff=PRICE, **NOT_FRIENDLY)
    m.apply_credit("card", 1, 1, 10_000)
    assert m.want_open


def test_friendly_hours_keep_water_on_and_record_debt():
    # 2026-01-01 is a Thursday; start at 21:00, friendly 20:00-08:00
    m, hw = make_meter(reopen="auto", tariff=PRICE, friendly_hours=[20, 8], friendly_days=[],
                       board_opts={"start": 1767225600 + 21 * 3600})
    m.apply_credit("card", 1, 1, 10_000)       # 10 L
    hw.world.flow.set_rate_lph(36)             # 36 L/h
    run(m, hw, 3600, 10_000)                   # 22:00: 36 L drawn, credit long gone
    assert m.want_open, "no cut-off in friendly hours"
    assert m.balance < 0 and m.in_debt
    assert len(_events(m, codes.EV_FRIENDLY_DEBT)) == 1
    run(m, hw, 10 * 3600, 60_000)              # past 08:00: friendly period over
    assert not m.want_open
    assert m.balance == 10_000 - m.volume.ml()  # charges accrued all night


def test_friendly_weekday_and_holiday():
    m, hw = make_meter(friendly_hours=[0, 0], friendly_days=[5, 6], friendly_dates=["12-25"])
    sat = 1767225600 + 2 * 86400               # 2026-01-03 is a Saturday
    assert m.friendly(sat + 12 * 3600)
    assert not m.friendly(sat - 86400 + 12 * 3600)
    xmas = 1798156800                          # 2026-12-25 00:00 UTC
    assert m.friendly(xmas + 3600)


def test_emergency_credit_once_per_cycle_and_repaid():
    m, hw = make_meter(reopen="auto", tariff=PRICE, emergency=5_000, low1=20_000, **NOT_FRIENDLY)
    m.apply_credit("card", 1, 1, 50_000)
    assert m.request_emergency() == codes.REFUSED      # credit is not low
    hw.world.flow.set_rate_lph(3600)
    run(m, hw, 60)                             # credit exhausted, valve closed
    assert not m.want_open
    hw.world.flow.set_rate_lph(0)
    before = m.balance
    assert m.request_emergency() == codes.ACCEPTED
    assert m.balance == before + 5_000 and m.emergency_owed == 5_000
    assert m.request_emergency() == codes.USED         # once per top-up cycle
    assert m.apply_credit("card", 1, 2, 30_000) == codes.ACCEPTED
    assert m.emergency_owed == 0
    assert m.balance == before + 5_000 + 30_000 - 5_000
    assert len(_events(m, codes.EV_EMERGENCY)) == 1


def test_limits_reject_and_apply_nothing():
    m, hw = make_meter(max_topup=100_000, max_balance=150_000)
    assert m.apply_credit("card", 1, 1, 100_001) == codes.OVER_LIMIT
    assert m.apply_credit("card", 1, 2, 100_000) == codes.ACCEPTED
    assert m.apply_credit("card", 1, 3, 60_000) == codes.OVER_LIMIT
    assert m.balance == 100_000
    # a rejected key was not consumed: the same key may come back within limits later
    assert m.apply_credit("card", 1, 3, 50_000) == codes.ACCEPTED


def test_bad_credit_requests_get_reason_codes():
    m, hw = make_meter()
    assert m.apply_credit("card", 1, 1, 0) == codes.RANGE
    assert m.apply_credit("card", 1, 1, -5) == codes.RANGE
    assert m.apply_credit("card", 1, 1, 1.5) == codes.FORMAT
    assert m.apply_credit("card", "x", 1, 5) == codes.FORMAT
    assert m.balance == 0
    assert len(_events(m, codes.EV_CREDIT_REJECTED)) == 4


def test_replay_window():
    m, hw = make_meter()
    for seq in (10, 12, 11):
        assert m.apply_credit("mqtt", 3, seq, 100) == codes.ACCEPTED
    assert m.apply_credit("mqtt", 3, 11, 100) == codes.USED
    # 1..9 are not settled: the 32-wide window never slides over them
    assert m.apply_credit("mqtt", 3, 41, 100) == codes.RANGE
    assert m.apply_credit("mqtt", 3, 5, 100) == codes.ACCEPTED   # late, still good
    for seq in (1, 2, 3, 4, 6, 7, 8, 9):                         # the office voids the others
        assert m.void_credit("mqtt", 3, seq) == codes.ACCEPTED
    assert m.void_credit("mqtt", 3, 5) == codes.USED             # applied: nothing owed
    assert m.void_credit("mqtt", 3, 4) == codes.ACCEPTED         # asked again: the same answer
    assert m.apply_credit("mqtt", 3, 4, 100) == codes.VOIDED
    assert m.apply_credit("mqtt", 3, 41, 100) == codes.ACCEPTED  # slides over 1..9 now
    assert m.apply_credit("mqtt", 3, 12, 100) == codes.USED      # still inside the window
    assert m.apply_credit("mqtt", 3, 44, 100) == codes.ACCEPTED  # 13 is the oldest unsettled: 44 is its last
    assert m.apply_credit("mqtt", 3, 12, 100) == codes.OLD       # below the floor: settled long ago
    assert m.apply_credit("card", 3, 12, 100) == codes.ACCEPTED  # another source, another key
    assert m.balance == 700


def test_credit_not_applied_when_it_cannot_be_made_durable():
    m, hw = make_meter()
    real_save = m.store.save

    def failing_save(state):
        raise OSError(28)                      # ENOSPC
    m.store.save = failing_save
    assert m.apply_credit("card", 1, 1, 1000) == codes.STORAGE
    assert m.balance == 0
    m.store.save = real_save
    assert m.apply_credit("card", 1, 1, 1000) == codes.ACCEPTED   # the retry goes through once
    assert m.apply_credit("card", 1, 1, 1000) == codes.USED
    assert m.balance == 1000
