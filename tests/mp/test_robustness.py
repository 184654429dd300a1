# Regressions from the review of the metering core: reboots, old or damaged
# files, bad configuration, clock trouble, and failures during a save.
import json
import boards
import codes
import config
import main
import meter as meter_mod
from boards.unix.clock import SimClock
from boards.unix.pins import SimPin
from metering.pulses import IrqSource
from mptest import fresh_dir
from simkit import make_cfg, make_meter, reboot, run

FLAT = {"v": 1, "b": [[0, 1_000_000]]}


def _reboot(m, hw, **cfg_over):
    m.save()
    hw2 = boards.load("unix").build(state_dir=hw.state_dir, start=hw.clock.time(), valve_open=m.want_open)
    cfg = dict(m.cfg)
    cfg.update(cfg_over)
    return main.assemble(hw2, cfg), hw2


def _events(m, code):
    return [e for e in m.log.recent(64) if e[2] == code]


def test_reboot_is_not_a_burst_and_reports_no_flow():
    m, hw = make_meter(reopen="auto")
    m.apply_credit("card", 1, 1, 50_000_000)
    hw.world.flow.set_rate_lph(1200)
    run(m, hw, 300)                               # 100 L on the register
    m2, hw2 = _reboot(m, hw)
    run(m2, hw2, 180)                             # no water after the reboot
    assert not _events(m2, codes.EV_BURST)
    assert m2.want_open and m2.why_closed == meter_mod.WHY_NONE
    assert m2.flow_mlph == 0


def test_state_from_an_older_firmware_restores():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    s = m.store.load()
    for k in ("rev", "debt", "vmv", "emo", "low"):
        s.pop(k, None)
    m.store.save(s)                               # a newer generation without those keys
    m2, hw2 = reboot(m, hw)
    assert m2.balance == 7000
    assert m2.apply_credit("card", 1, 1, 7000) == codes.USED


def test_unusable_newest_copy_falls_back_to_the_older_one():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)           # saved: generation g
    m.store.save({"bal": 1, "vol": "nonsense"})   # g+1 passes its CRC but cannot be applied
    m2, hw2 = reboot(m, hw)
    assert m2.balance == 7000
    assert _events(m2, codes.EV_STATE_CORRUPT)


def test_stored_tariff_that_no_longer_validates_gives_way_to_the_configured_one():
    m, hw = make_meter(tariff=FLAT)
    m.apply_credit("card", 1, 1, 7000)
    s = m.store.load()
    s["tar"] = {"v": 5, "b": [[10, 1], [5, 2], [0, 3]]}
    m.store.save(s)
    m2, hw2 = reboot(m, hw)
    assert m2.balance == 7000 and m2.billing.tariff.version == 1
    assert _events(m2, codes.EV_TARIFF_REJECTED)


def _load_cfg(text):
    d = fresh_dir("cfg")
    with open(d + "/config.json", "w") as f:
        f.write(text)
    return config.load(d)


def test_bad_config_files_degrade_to_defaults():
    c = _load_cfg("[1, 2]")
    assert c["k"] == config.DEFAULTS["k"] and "_error" in c
    c = _load_cfg(json.dumps({"k": [0, 1], "save_l": "10", "period_day": 31, "low1": 2_000_000,
                              "tariff": {"v": 1}, "burst_s": 0}))
    for key in ("k", "save_l", "period_day", "tariff", "burst_s"):
        assert c[key] == config.DEFAULTS[key], key
    assert c["low1"] == 2_000_000                 # the valid setting is kept
    assert "save_l" in c["_error"] and "tariff" in c["_error"]
    # and a meter starts on it, and says so
    d = fresh_dir("cfgm")
    with open(d + "/config.json", "w") as f:
        f.write('{"k": [0, 1], "save_l": "x"}')
    hw = boards.load("unix").build(state_dir=d)
    m = main.assemble(hw)
    run(m, hw, 5)
    assert _events(m, codes.EV_CONFIG)


def test_debounce_survives_a_ticks_us_wrap():
    clock = SimClock()
    pin = SimPin("p")
    src = IrqSource(pin, SimPin.IRQ_RISING, clock.ticks_us, clock.ticks_diff, 5000)
    pin._handler(pin)
    assert src.take() == 1
    clock.advance(12 * 60 * 1000)                 # 12 quiet minutes: ticks_us has half wrapped
    n = 0
    for _ in range(80):                           # then a pulse every 6 s
        pin._handler(pin)
        clock.advance(6000)
        n += 1
    assert src.take() == n and src.rejected == 0


def test_credit_not_acknowledged_when_save_raises_anything():
    m, hw = make_meter()
    real = m.store.save

    def boom(state):
        raise MemoryError
    m.store.save = boom
    assert m.apply_credit("card", 1, 1, 1000) == codes.STORAGE
    assert m.balance == 0
    m.store.save = real
    assert m.apply_credit("card", 1, 1, 1000) == codes.ACCEPTED
    assert m.balance == 1000


def test_rollover_and_tariff_change_in_one_poll_bill_standing_once():
    jan31 = 1769817600
    feb1 = jan31 + 86400
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 0]], "sc": 86_400}, period_day=1,
                       board_opts={"start": jan31})
    m.apply_credit("card", 1, 1, 10_000_000)
    run(m, hw, 1)
    assert m.stage_tariff({"v": 2, "at": feb1 - 10, "b": [[0, 0]], "sc": 172_800}) == codes.ACCEPTED
    before = m.balance
    hw.clock.advance(2 * 86400 * 1000 - 1000)     # no poll for two days: to Feb 2, 00:00
    m.poll()
    # period to Feb 1 at 1/s, then Feb 1 -> Feb 2 at 1/s (the tariff activates at this poll)
    assert before - m.balance == 86_400 - 1 + 86_400


def test_unset_clock_charges_no_standing_for_the_lost_years():
    y2000 = 946684800
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 1_000_000]], "sc": 41_000}, reopen="auto",
                       board_opts={"start": y2000 + 100})
    m.apply_credit("card", 1, 1, 1_000_000)
    hw.world.flow.set_rate_lph(360)
    run(m, hw, 100)                               # 10 L on an unset clock: billed
    assert m.balance == 1_000_000 - 10_000
    hw.clock.set_time(1767225600)                 # the time is set: 2026
    run(m, hw, 100)
    water = m.volume.ml() * 1_000_000 // 1_000_000
    assert 1_000_000 - m.balance - water <= 41_000 * 101 // 86400 + 1


def test_clock_set_back_refunds_nothing():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 0]], "sc": 86_400})
    m.apply_credit("card", 1, 1, 1_000_000)
    run(m, hw, 100)
    bal = m.balance
    hw.clock.set_time(hw.clock.time() - 50)
    run(m, hw, 10)
    assert m.balance == bal


def test_garbage_in_the_event_log_costs_a_line_not_the_meter():
    d = fresh_dir("ev")
    with open(d + "/events.log", "wb") as f:
        f.write(b"1 1767225600 1 0\n\xff\xfe garbage\n2 1767225601 2 500\n")
    hw = boards.load("unix").build(state_dir=d)
    m = main.assemble(hw, make_cfg())
    seqs = [e[0] for e in m.log.recent(10)]
    assert 1 in seqs and 2 in seqs and m.log.seq >= 3


def test_a_full_ledger_refuses_new_accounts_instead_of_forgetting_old_ones():
    m, hw = make_meter(max_balance=10 ** 9)
    assert m.apply_credit("mqtt", 1, 5, 1000) == codes.ACCEPTED
    for a in range(2, 17):
        assert m.apply_credit("mqtt", a, 1, 10) == codes.ACCEPTED
    assert m.apply_credit("mqtt", 99, 1, 10) == codes.REFUSED
    assert m.apply_credit("mqtt", 1, 5, 1000) == codes.USED   # never forgotten


def test_emergency_refused_when_it_would_not_bring_water_back():
    m, hw = make_meter(emergency=5000)
    m.balance = -20_000
    assert m.request_emergency() == codes.REFUSED
    assert m.emergency_owed == 0


def test_oversized_credit_keys_are_refused():
    m, hw = make_meter()
    assert m.apply_credit("mqtt", 1, 10 ** 300, 1000) == codes.RANGE
    assert m.apply_credit("mqtt", 1 << 32, 1, 1000) == codes.RANGE
    assert m.apply_credit("mqtt", 1, 1, 1000) == codes.ACCEPTED   # the account still works


def test_an_install_card_binds_once():
    m, hw = make_meter()
    assert m.install(4242, 5, 1) == codes.ACCEPTED
    assert m.install(77, 1, 2) == codes.ACCEPTED
    assert m.install(4242, 5, 1) == codes.OLD          # the previous tenant's card again
    assert m.install(77, 1, 2) == codes.USED
    assert (m.cfg["account"], m.cfg["region"]) == (77, 1)
    m2 = main.assemble(boards.load("unix").build(state_dir=hw.state_dir), config.load(hw.state_dir))
    assert m2.install(4242, 5, 1) == codes.OLD, "the binding survives a reboot"


def test_tariff_not_staged_when_it_cannot_be_saved():
    m, hw = make_meter()

    def boom(state):
        raise OSError(28)
    real = m.store.save
    m.store.save = boom
    assert m.stage_tariff({"v": 2, "at": hw.clock.time() + 3600, "b": [[0, 1]], "sc": 0}) == codes.STORAGE
    assert m.staged is None
    m.store.save = real


def test_clock_set_back_over_mqtt_keeps_periods_right():
    from commskit import make_link, command, send
    link, m, hw, b, rt = make_link()
    now = hw.clock.time()
    send(link, b, command(link, 1, "time", t=now + 5 * 365 * 86400))
    m.poll()
    send(link, b, command(link, 2, "time", t=now))
    assert hw.clock.time() == now
    assert m.period_end - now <= 31 * 86400, "a period must not be skipped for five years"


def test_wifi_secrets_of_the_wrong_shape_do_not_stop_the_boot():
    import sys
    import boards.unix as unix_board

    class WifiBoard:                 # the simulator, posing as a board with Wi-Fi
        HAS_WIFI = True
        seen = []

        @staticmethod
        def build(wifi=("", ""), **opts):
            WifiBoard.seen.append(wifi)
            return unix_board.build(**opts)
    boards.wifiboard = WifiBoard
    sys.modules["boards.wifiboard"] = WifiBoard
    d = fresh_dir("wifi")
    with open(d + "/secrets.json", "w") as f:
        f.write('{"wifi": "myssid"}')
    s = main.boot("wifiboard", state_dir=d)
    assert s is not None, "the meter must start without Wi-Fi rather than not at all"
    assert WifiBoard.seen == [("", "")]
    s.stop() if hasattr(s, "stop") else None
