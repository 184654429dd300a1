# The MQTT link against a fake umqtt client, on the virtual meter clock and a
# hand-stepped real-time clock: commands, acks, replay, store-and-forward,
# backoff and keepalive.
import json

import codes
from comms import codec
from comms.link import BACKOFF_MIN_MS
import officekit
from commskit import make_link, command, send, records, events, region_tariff, MK
from simkit import run


def test_reports_keep_coming_after_the_clock_is_set_back():
    link, m, hw, b, rt = make_link(report_s=600)
    link.step()
    n0 = link.outbox.next_seq
    hw.clock.set_time(hw.clock.time() - 86400)
    run(m, hw, 1)
    link.step()
    assert link.outbox.next_seq > n0


def test_connects_subscribes_and_announces():
    link, m, hw, b, rt = make_link()
    link.step()
    assert link.connected and b.connects == 1
    assert (link.t_cmd, 1) in b.subs and (link.t_tariff, 1) in b.subs
    assert b.wills == [(b"m/M000001/s", b"0", True, 1)]
    assert b.topics(b"/s")[0][1:3] == (b"1", True)


def test_telemetry_and_events_go_out_in_order():
    link, m, hw, b, rt = make_link(report_s=600, reopen="auto")
    link.step()
    hw.world.flow.set_rate_lph(600)
    m.apply_credit("card", 1, 1, 1_000_000)
    for _ in range(6):
        run(m, hw, 600)
        link.step()
    got = records(b)
    seqs = [r["seq"] for r in got]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    tel = [r for r in got if r["kind"] == codec.TELE]
    assert len(tel) >= 6
    assert 0 < tel[-1]["ml"] <= m.volume.ml()
    assert any(r["kind"] == codec.EVENT and r["code"] == codes.EV_CREDIT for r in got)
    assert link.outbox.count == 0


def test_topup_applies_once_and_acks():
    link, m, hw, b, rt = make_link()
    link.step()
    a = send(link, b, command(link, 1, "topup", a=7, s=1, v=2_000_000))
    assert a == [{"n": 1, "code": codes.ACCEPTED, "val": 2_000_000, "detail": None}]
    # the head-end re-sends the same top-up (new counter, same ledger key)
    a = send(link, b, command(link, 2, "topup", a=7, s=1, v=2_000_000))
    assert a[0]["code"] == codes.USED and m.balance == 2_000_000
    # and it is still known after a restart
    assert m.ledger.check("mqtt", 7, 1) == codes.USED


def test_replayed_command_is_refused_as_old():
    link, m, hw, b, rt = make_link()
    link.step()
    p = command(link, 5, "topup", a=1, s=1, v=1000)
    assert send(link, b, p)[0]["code"] == codes.ACCEPTED
    a = send(link, b, p)
    assert a[0]["code"] == codes.OLD and a[0]["val"] == 5
    a = send(link, b, command(link, 4, "topup", a=1, s=2, v=1000))  # older counter
    assert a[0]["code"] == codes.OLD
    assert m.balance == 1000
    assert events(m, codes.EV_COMMAND_REJECTED)[-1][3] == codes.OLD


def test_counter_survives_restart():
    link, m, hw, b, rt = make_link()
    link.step()
    send(link, b, command(link, 9, "get", w="state"))
    link2, m2, hw2, b2, rt2 = make_link(hw.state_dir)
    link2.step()
    assert send(link2, b2, command(link2, 9, "get", w="state"))[0]["code"] == codes.OLD
    assert send(link2, b2, command(link2, 10, "get", w="state"))[0]["code"] == codes.ACCEPTED


def test_forged_and_malformed_commands_never_act():
    link, m, hw, b, rt = make_link()
    link.step()
    forged = command(link, 1, "topup", key=b"not-the-meter-key-0123456789abcd", a=1, s=1, v=10**6)
    assert send(link, b, forged)[0]["code"] == codes.SIGNATURE
    body = codec.command(2, "topup", a=1, s=1, v=10**6)
    assert send(link, b, body)[0]["code"] == codes.FORMAT              # unsigned
    assert send(link, b, b"\xff" * 3000)[0]["code"] == codes.FORMAT     # oversized garbage
    no_n = codec.seal(MK, link.t_cmd, b'{"op":"topup"}')
    assert send(link, b, no_n)[0]["code"] == codes.FORMAT
    bad_n = codec.seal(MK, link.t_cmd, b'{"n":-1,"op":"topup"}')
    assert send(link, b, bad_n)[0]["code"] == codes.RANGE
    not_json = codec.seal(MK, link.t_cmd, b"n=1 topup")
    assert send(link, b, not_json)[0]["code"] == codes.FORMAT
    a = send(link, b, command(link, 3, "topup", a=1, s=1, v="lots"))
    assert a[0]["code"] == codes.FORMAT
    a = send(link, b, command(link, 4, "topup", a=1, s=1))              # missing amount
    assert a[0]["code"] == codes.FORMAT
    a = send(link, b, command(link, 5, "launch"))
    assert a[0]["code"] == codes.UNKNOWN
    assert m.balance == 0 and link.connected
    assert link.cmd_n == 5  # only signed, well-formed commands move the counter
    assert len(events(m, codes.EV_COMMAND_REJECTED)) >= 8


def test_over_limit_and_range_come_back_as_codes():
    link, m, hw, b, rt = make_link(max_topup=1_000_000)
    link.step()
    assert send(link, b, command(link, 1, "topup", a=1, s=1, v=2_000_000))[0]["code"] == codes.OVER_LIMIT
    assert send(link, b, command(link, 2, "topup", a=1, s=2, v=0))[0]["code"] == codes.RANGE
    assert m.balance == 0


def test_region_tariff_broadcast_is_verified():
    link, m, hw, b, rt = make_link()
    link.step()
    t = {"v": 2, "at": 0, "b": [[0, 500_000]], "sc": 0}
    genuine = region_tariff(**t)
    forged = officekit.message(b"tariff", genuine[:-129], 12345)   # the body, another key
    send(link, b, forged, link.t_tariff)
    assert m.billing.tariff.version == 1
    assert events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.SIGNATURE
    a = send(link, b, genuine, link.t_tariff)
    run(m, hw, 2)
    assert m.billing.tariff.version == 2
    assert a == [{"n": 0, "code": codes.ACCEPTED, "val": 2, "detail": None}]
    # the retained copy comes again on every reconnect: no second ack, no change
    assert send(link, b, genuine, link.t_tariff) == []
    # another region's tariff, though genuine, is not ours
    send(link, b, region_tariff(region=2, v=3, at=0, b=[[0, 1]], sc=0), link.t_tariff)
    assert m.staged is None and events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.WRONG_REGION


def test_per_meter_tariff_command():
    link, m, hw, b, rt = make_link()
    link.step()
    t = {"v": 3, "at": hw.clock.time() + 60, "b": [[1000, 350_000], [0, 700_000]], "sc": 100}
    a = send(link, b, command(link, 1, "tariff", tar=t))
    assert a[0]["code"] == codes.ACCEPTED and a[0]["val"] == 3
    assert m.staged is not None
    run(m, hw, 61)
    assert m.billing.tariff.version == 3


def test_config_set_is_validated_and_persisted():
    link, m, hw, b, rt = make_link()
    link.step()
    assert send(link, b, command(link, 1, "cfg", k="report_s", v=900))[0]["code"] == codes.ACCEPTED
    assert m.cfg["report_s"] == 900
    assert send(link, b, command(link, 2, "cfg", k="report_s", v=5))[0]["code"] == codes.RANGE
    assert send(link, b, command(link, 3, "cfg", k="meter_id", v="X"))[0]["code"] == codes.UNKNOWN
    assert send(link, b, command(link, 4, "cfg", k="friendly_hours", v=[22, 7]))[0]["code"] == codes.ACCEPTED
    assert send(link, b, command(link, 5, "cfg", k="friendly_days", v=[9]))[0]["code"] == codes.RANGE
    assert send(link, b, command(link, 6, "cfg", k="friendly_dates", v=["12-25", "01-01"]))[0]["code"] == 0
    assert send(link, b, command(link, 7, "cfg", k="friendly_dates", v=["13-01"]))[0]["code"] == codes.RANGE
    assert send(link, b, command(link, 8, "cfg", k="reopen", v="auto"))[0]["code"] == codes.ACCEPTED
    assert send(link, b, command(link, 9, "cfg", k="low1", v=True))[0]["code"] == codes.FORMAT
    low1 = m.cfg["low1"]
    assert send(link, b, command(link, 11, "cfg", k="low2", v=low1 + 1))[0]["code"] == codes.RANGE
    with open(hw.state_dir + "/config.json") as f:
        saved = json.load(f)
    assert saved["report_s"] == 900 and saved["friendly_hours"] == [22, 7] and saved["reopen"] == "auto"
    a = send(link, b, command(link, 12, "get", w="cfg"))
    assert a[0]["detail"]["friendly_dates"] == ["12-25", "01-01"]


def test_time_sync_and_state_and_log_requests():
    link, m, hw, b, rt = make_link()
    link.step()
    t = hw.clock.time() + 3600
    a = send(link, b, command(link, 1, "time", t=t))
    assert a[0]["code"] == codes.ACCEPTED and abs(hw.clock.time() - t) <= 1
    assert events(m, codes.EV_TIME_SET)[-1][3] == 3600
    assert send(link, b, command(link, 2, "time", t=12))[0]["code"] == codes.RANGE
    a = send(link, b, command(link, 3, "get", w="state"))
    assert a[0]["detail"]["id"] == "M000001" and a[0]["detail"]["n"] == 3
    a = send(link, b, command(link, 4, "get", w="log", f=0))
    assert a[0]["val"] == m.log.seq and a[0]["detail"][0][2] == codes.EV_POWER_UP


def test_remote_valve_goes_through_the_meter():
    link, m, hw, b, rt = make_link()
    link.step()
    # no credit: a plain remote open is refused by the meter's policy ...
    assert send(link, b, command(link, 1, "valve", o=1, f=0))[0]["code"] == codes.REFUSED
    assert not m.want_open
    # ... an authorised override opens it ...
    a = send(link, b, command(link, 2, "valve", o=1, f=1))
    assert a[0]["code"] == codes.ACCEPTED and a[0]["val"] == 1 and m.want_open
    # ... and a remote close holds
    a = send(link, b, command(link, 3, "valve", o=0))
    assert a[0]["code"] == codes.ACCEPTED and a[0]["val"] == 0 and not m.want_open
    run(m, hw, 2)
    assert hw.world.valve.state == 0


def test_outage_keeps_records_and_delivers_them_in_order():
    link, m, hw, b, rt = make_link(report_s=3600, reopen="auto")
    m.apply_credit("card", 1, 1, 50_000_000)
    link.step()
    hw.world.flow.set_rate_lph(100)
    b.up = False
    for h in range(48):             # two days offline, hourly telemetry
        run(m, hw, 3600, step_ms=60_000)
        rt.ms += 60_000
        link.step()
    assert not link.connected and link.outbox.count >= 48
    assert m.volume.ml() == 4_800_000    # metering never stopped
    b.up = True
    for _ in range(200):
        rt.ms += 600_000
        link.step()
        if link.outbox.count == 0:
            break
    assert link.outbox.count == 0
    got = records(b)
    assert [r["seq"] for r in got] == list(range(1, len(got) + 1))
    tel = [r for r in got if r["kind"] == codec.TELE]
    assert len(tel) >= 49 and tel[-1]["ml"] == 4_800_000
    assert b.connects >= 2 and (link.t_cmd, 1) in b.subs[2:]   # subscribed again


def test_publish_failure_mid_batch_loses_nothing():
    link, m, hw, b, rt = make_link(report_s=60)
    link.step()
    run(m, hw, 600)
    b.fail_publish = 1
    link.step()                 # the publish fails: connection dropped
    assert not link.connected
    rt.ms += 10_000
    link.step()
    link.step()
    got = records(b)
    assert [r["seq"] for r in got] == list(range(1, len(got) + 1))
    assert link.outbox.count == 0


def test_backoff_grows_with_jitter_and_resets():
    link, m, hw, b, rt = make_link()
    b.up = False
    delays = []
    for _ in range(12):
        link.step()
        delays.append(link._next_try - rt.ms)
        rt.ms = link._next_try
    b_ms = BACKOFF_MIN_MS
    for d in delays:
        assert b_ms // 2 <= d <= b_ms, (d, b_ms)
        b_ms = min(b_ms * 2, 300_000)
    assert max(delays) > 100_000 and max(delays) <= 300_000
    assert len(set(delays)) > 3              # jitter
    b.up = True
    link.step()
    assert link.connected and link.backoff_ms == BACKOFF_MIN_MS


def test_keepalive_runs_on_real_time_not_meter_time():
    link, m, hw, b, rt = make_link(mqtt={"host": "x", "port": 1, "tls": False, "keepalive": 60})
    link.step()
    run(m, hw, 3 * 3600)       # three simulated hours, no real time
    link.step()
    assert b.pings == 0
    rt.ms += 30_000            # half a keepalive of real time
    link.step()
    assert b.pings == 1


def test_silent_broker_is_dropped_after_a_keepalive():
    link, m, hw, b, rt = make_link(mqtt={"host": "x", "port": 1, "tls": False, "keepalive": 60})
    link.step()
    assert link.connected
    b.silent = True            # half-open: the broker takes bytes and never answers
    rt.ms += 60_000
    link.step()
    assert link.connected     # pinged; waiting for the answer
    rt.ms += 10_000
    link.step()
    assert not link.connected and link.failures == 1


def test_commands_queued_while_offline_are_handled_on_reconnect():
    link, m, hw, b, rt = make_link()
    b.pending.append((link.t_cmd, command(link, 1, "topup", a=1, s=1, v=5000)))
    b.pending.append((link.t_cmd, command(link, 2, "topup", a=1, s=2, v=5000)))
    link.step()
    link.step()
    assert m.balance == 10_000
    assert [codec.parse_ack(p[1])["n"] for p in b.topics(b"/a")] == [1, 2]


def test_meter_without_keys_refuses_every_command():
    link, m, hw, b, rt = make_link(meter_key=None)
    link.step()
    assert send(link, b, command(link, 1, "topup", a=1, s=1, v=5000))[0]["code"] == codes.SIGNATURE
    assert m.balance == 0


def test_network_flap_comes_back_within_backoff():
    link, m, hw, b, rt = make_link(mqtt={"host": "x", "port": 1, "tls": False, "keepalive": 60,
                                         "backoff_max_s": 8})
    link.step()
    assert link.connected
    hw.net.up = False          # Wi-Fi gone: the broker drops us too
    b.up = False
    for _ in range(20):        # 20 s of real time without a network
        rt.ms += 1000
        link.step()
    assert not link.connected and link.failures >= 3
    assert link.backoff_ms <= 8000
    hw.net.up = True
    b.up = True
    t_back = rt.ms
    while not link.connected and rt.ms - t_back <= 8000 + 1000:
        rt.ms += 100
        link.step()
    assert link.connected, "not back within backoff_max_s after the network returned"
    assert send(link, b, command(link, 1, "get", w="state"))[0]["code"] == codes.ACCEPTED
