# Switching the meter off while drawing water (outside review, hardware
# level): a latching valve stays where it is with no power, and nothing
# counts while the meter is off. The board's power-fail input (brown-out
# comparator; hold-up capacitor for one valve pulse and one save) closes the
# valve as the supply goes. Each test fails if the attack works.
import codes
from simkit import make_meter, reboot, run

MON_2026 = 1767571200
OFF_S = 10 * 3600                       # ten hours of hose at 1 m3/h while off


def _metered(credit=10_000):
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 350_000]]}, reopen="auto",
                       board_opts={"start": MON_2026 + 9 * 3600, "valve_open": True})
    assert m.apply_credit("card", 1, 1, credit) == codes.ACCEPTED
    hw.world.flow.set_rate_lph(1000)
    run(m, hw, 60, 1000)
    assert m.want_open and hw.world.valve.state
    return m, hw


def _off_for(hw, s):
    # the meter is dead: nothing polls; the water (and the valve model) go on
    flow = hw.world.flow
    before = flow.emitted
    for _ in range(s // 60):
        hw.clock.advance(60_000)
        flow.counter.value()
    return flow.emitted - before


def test_water_after_a_power_cut_is_bounded():
    m, hw = _metered()
    bal, ml = m.balance, m.volume.ml()
    assert hw.world.mains.cut(), ("power-fail work outlasted the hold-up", hw.world.mains.used_ms)
    print("power-fail work", hw.world.mains.used_ms, "ms of", hw.world.mains.holdup_ms)
    assert not m.want_open and m.why_closed == codes.WHY_POWER
    free = _off_for(hw, OFF_S)
    print("litres through the valve in", OFF_S // 3600, "h off:", free)
    assert free <= 1, free               # the plunger's travel at most: 80 ms at 1 m3/h
    assert hw.world.valve.state == 0
    ev = [e for e in m.log.recent(8) if e[2] == codes.EV_VALVE_CLOSED]
    assert ev and ev[-1][3] == codes.WHY_POWER
    # the save ran inside the hold-up: the next boot has this volume and balance
    m2, hw2 = reboot(m, hw, start=MON_2026 + 9 * 3600 + 60 + OFF_S, valve_open=False)
    assert (m2.balance, m2.volume.ml()) == (bal, ml), (m2.balance, m2.volume.ml(), bal, ml)
    # reopened by the normal policy: credit left, so open again
    run(m2, hw2, 1)
    assert m2.want_open and m2.why_closed == codes.WHY_NONE and hw2.world.valve.state == 1


def test_a_power_cut_with_no_credit_left_boots_closed_for_credit():
    m, hw = _metered(credit=6_000)        # 17 L at 0.35/m3
    run(m, hw, 120, 1000)                  # gone in a minute at 1 m3/h
    assert m.balance <= 0 and not m.want_open
    m._set_valve(True, codes.WHY_NONE)    # say a friendly period had kept it open
    hw.world.mains.cut()
    assert m.why_closed == codes.WHY_POWER
    m2, hw2 = reboot(m, hw, start=MON_2026 + 9 * 3600 + 3600)
    assert not m2.want_open and m2.why_closed == codes.WHY_CREDIT


def test_a_closed_valve_stays_closed_for_its_own_reason_through_a_cut():
    m, hw = _metered()
    assert m.request_valve(False, "mqtt") == codes.ACCEPTED
    hw.world.mains.cut()
    assert m.why_closed == codes.WHY_COMMAND
    m2, hw2 = reboot(m, hw, start=MON_2026 + 9 * 3600 + 3600)
    assert not m2.want_open and m2.why_closed == codes.WHY_COMMAND


def test_a_cut_between_a_credits_write_and_its_rename_closes_the_valve_and_keeps_the_credit():
    # The supply goes while a save is in progress (the soft IRQ runs between
    # two bytecodes of it): the valve closes, and that save, not a second one
    # over the same new copy, is what the next boot finds.
    import storage.state as st
    m, hw = _metered()
    real = st.os

    class CutAtRename:
        def __getattr__(self, name):
            return getattr(real, name)

        def rename(self, a, b):
            st.os = real
            hw.world.mains.cut()
            real.rename(a, b)

    st.os = CutAtRename()
    try:
        assert m.apply_credit("card", 1, 2, 5_000) == codes.ACCEPTED
    finally:
        st.os = real
    assert hw.world.mains.used_ms is not None and hw.world.mains.used_ms <= hw.world.mains.holdup_ms
    assert m.why_closed == codes.WHY_POWER
    assert _off_for(hw, 3600) <= 1 and hw.world.valve.state == 0
    m2, hw2 = reboot(m, hw, start=MON_2026 + 9 * 3600 + 3600)
    assert (m2.balance, m2.volume.ml()) == (m.balance, m.volume.ml())
    assert m2.apply_credit("card", 1, 2, 5_000) != codes.ACCEPTED   # applied once, and kept
    run(m2, hw2, 1)
    assert m2.want_open and hw2.world.valve.state == 1
