# The clock cannot be turned into free water (issue 10 item 4). After a
# power loss an ESP32's RTC reads 2000-01-01, a Saturday: a meter that
# trusted it never cut off for lack of credit. The customer owns the power
# switch, so the attack is to cut the power every two days.
import boards
import codes
import config
import main
import meter as meter_mod
from simkit import make_cfg, make_meter, run

Y2000 = 946684800            # 2000-01-01 00:00 UTC, Saturday: what the RTC reads after a power loss
MON_2026 = 1767571200        # 2026-01-05 00:00 UTC, Monday
SAT_2026 = 1767398400        # 2026-01-03 00:00 UTC, Saturday
PRICE = 350_000              # per m3: 1.00 of credit (100 000 units) buys 285.7 L
CREDIT = 100_000
STEP_MS = 60_000             # one poll a minute: days of water in a few seconds


def _litres_for(units):
    return units * 1000 // PRICE


def _power_cycle(m, hw, rtc):
    # the valve stays where it physically is; the RTC restarts at `rtc`
    hw2 = boards.load("unix").build(state_dir=hw.state_dir, start=rtc,
                                    valve_open=bool(hw.world.valve.state))
    hw2.world.flow.set_rate_lph(1000)
    return main.assemble(hw2, dict(m.cfg)), hw2


def test_power_cycles_to_year_2000_give_no_free_water():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, PRICE]]}, reopen="auto",
                       board_opts={"start": MON_2026 + 9 * 3600, "valve_open": True})
    assert m.apply_credit("card", 1, 1, CREDIT) == codes.ACCEPTED
    hw.world.flow.set_rate_lph(1000)            # a hose that never stops
    run(m, hw, 600, STEP_MS)                     # 10 minutes on a good clock: the floor is set
    delivered = hw.world.flow.delivered_ml()
    for _ in range(5):                           # a power cut every two days
        m, hw = _power_cycle(m, hw, Y2000)
        run(m, hw, 2 * 86400, STEP_MS)
        delivered += hw.world.flow.delivered_ml()
    # the credit's water, plus one poll of flow and the valve's travel
    assert delivered <= (_litres_for(CREDIT) + 20) * 1000, "%d L delivered on 1.00 of credit" % (
        delivered // 1000)
    assert not m.want_open and m.why_closed == codes.WHY_CREDIT
    assert m.clock.time() >= MON_2026, "the meter's clock ran behind its floor"
    assert [e for e in m.log.recent(64) if e[2] == codes.EV_CLOCK_UNTRUSTED]
    assert m.snapshot()["sf"] & meter_mod.SF_CLOCK_UNTRUSTED


def test_an_unset_clock_on_a_new_meter_grants_no_friendly_hours():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, PRICE]]}, reopen="auto",
                       board_opts={"start": Y2000, "valve_open": True})
    m.apply_credit("card", 1, 1, CREDIT)
    hw.world.flow.set_rate_lph(1000)
    run(m, hw, 86400, STEP_MS)
    assert hw.world.flow.delivered_ml() <= (_litres_for(CREDIT) + 20) * 1000
    assert not m.friendly(m.clock.time())


def test_a_trusted_time_set_brings_friendly_hours_back():
    m, hw = make_meter(board_opts={"start": MON_2026 + 9 * 3600})
    run(m, hw, 60)
    m, hw = _power_cycle(m, hw, Y2000)
    assert not m.clock_trusted
    m2, hw2 = _power_cycle(m, hw, hw.clock.time())   # a reboot alone does not trust it again
    assert not m2.clock_trusted
    assert m2.set_time(SAT_2026 + 7 * 86400) == codes.ACCEPTED   # the head-end's signed time
    assert m2.clock_trusted and m2.friendly(m2.clock.time())
    m3, _ = _power_cycle(m2, hw2, m2.clock.time())
    assert m3.clock_trusted and not m3.snapshot()["sf"] & meter_mod.SF_CLOCK_UNTRUSTED


def test_friendly_debt_stops_at_its_cap():
    cap = 200_000
    m, hw = make_meter(tariff={"v": 1, "b": [[0, PRICE]]}, reopen="auto", friendly_debt_max=cap,
                       board_opts={"start": SAT_2026, "valve_open": True})
    m.apply_credit("card", 1, 1, CREDIT)
    hw.world.flow.set_rate_lph(1000)
    run(m, hw, 2 * 86400, STEP_MS)                # a whole friendly weekend
    assert not m.want_open and m.why_closed == codes.WHY_CREDIT
    assert hw.world.flow.delivered_ml() <= (_litres_for(CREDIT + cap) + 20) * 1000
    assert m.balance >= -cap - PRICE * 20 // 1000   # one poll of flow beyond the cap at most
    # and the boot reconciliation keeps it closed
    m2, _ = _power_cycle(m, hw, m.clock.time())
    assert not m2.want_open


def test_friendly_debt_cap_is_a_validated_setting():
    assert config.check("friendly_debt_max", 300_000)[0] == codes.ACCEPTED
    assert config.check("friendly_debt_max", -1)[0] == codes.RANGE
    assert config.check("friendly_debt_max", "5")[0] == codes.FORMAT
    c = make_cfg()
    assert c["friendly_debt_max"] == config.DEFAULTS["friendly_debt_max"] > 0


def test_telemetry_tells_the_head_end_the_clock_is_untrusted():
    from comms import codec
    from commskit import make_link, records
    link, m, hw, b, rt = make_link(board_opts={"start": Y2000})
    assert not m.clock_trusted
    link.step()                                   # connects, telemetry at boot
    tele = [r for r in records(b) if r["kind"] == codec.TELE]
    assert tele and tele[-1]["sf"] & meter_mod.SF_CLOCK_UNTRUSTED
