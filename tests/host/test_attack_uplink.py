"""Attacks on the uplink (docs/SECURITY.md "Uplink"), from the outside
review: a customer with their own meter's broker password (secrets.json)
publishes on that meter's topics. Each test fails if the attack works."""
import json
import shutil
import time

from comms import codec
from conftest import sql
from mqttkit import connected


def _client(w, user, pw):
    return connected(w, user, pw, "x-" + user)


def _top_seq(he, meter):
    return max(r[0] for r in sql(
        he, "SELECT seq FROM telemetry WHERE meter = :m UNION SELECT seq FROM events WHERE meter = :m",
        m=meter))


def test_forged_uplink_neither_freezes_the_meters_row_nor_hides_genuine_events(fresh_world):
    w = fresh_world
    he = w.he
    m = w.start_meter("M1")
    m.wait(lambda s: s["connected"], what="connected")
    assert he.topup("M1", 100_000, account=1)["code"] == 0
    time.sleep(2)
    last = _top_seq(he, "M1")
    s = json.loads((w.tmp / "M1" / "secrets.json").read_text())
    c = _client(w, s["user"], s["pw"])
    now = int(time.time())
    t = codec.tele(now, 0, 900_000_000, 0, 1, 1, 0, -50)
    codec.set_seq(t, 0xFFFFFFFF)
    # untagged, and tagged under a guessed key: both are forgeries
    c.publish("m/M1/t", codec.batch([t]), qos=1).wait_for_publish()
    c.publish("m/M1/t", codec.seal_up(b"guess", "m/M1/t", codec.batch([t])), qos=1).wait_for_publish()
    evs = []
    for i in range(1, 101):
        e = codec.event(i, now, 28, 0)
        codec.set_seq(e, last + i)
        evs.append(e)
    for k in range(0, 100, 20):
        c.publish("m/M1/e", codec.batch(evs[k:k + 20]), qos=1).wait_for_publish()
    # a forged ack of the next command, before the meter can answer
    n_next = sql(he, "SELECT ctr FROM meters WHERE id='M1'")[0][0] + 1
    c.publish("m/M1/a", codec.seal_up(b"guess", "m/M1/a", codec.ack(n_next, 0, 0)),
              qos=1).wait_for_publish()
    c.disconnect()
    c.loop_stop()
    time.sleep(1)
    m.wait(lambda s: s["connected"], what="reconnected")
    a = he.configure("M1", "report_s", 120)
    assert a["code"] == 0 and a["n"] == n_next
    assert he.valve("M1", False)["code"] == 0
    time.sleep(3)
    row = [x for x in he.meters() if x["id"] == "M1"][0]
    codes_seen = [r[0] for r in sql(he, "SELECT code FROM events WHERE meter='M1' AND seq > :s",
                                    s=last)]
    print("head-end bal", row["bal"], "alarms", row["alarms"], "codes", sorted(set(codes_seen)))
    assert row["bal"] == he.get("M1")["detail"]["bal"] == 100_000
    assert 20 in codes_seen, "the genuine config event was dropped"
    assert 28 not in codes_seen, "a forged event was stored"
    assert "forged_uplink" in row["alarms"]
    assert len([a for a in he.alarms("M1") if a["kind"] == "forged_uplink"]) == 8


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("proc.log", "status.json", "ctl.json"))


def test_a_consistent_rollback_of_the_state_directory_is_flagged(fresh_world):
    w = fresh_world
    he = w.he
    m = w.start_meter("M3", report_s=60)
    m.wait(lambda s: s["connected"], what="connected")
    assert he.topup("M3", 1_000_000, account=1)["code"] == 0
    time.sleep(3)
    he.get("M3")                                      # the utility reads it now and then
    m.stop()
    d = w.tmp / "M3"
    _copy(d, w.tmp / "M3.yesterday")                  # the customer's dump
    m = w.start_meter("M3")
    m.set(flow=2000)
    m.wait(lambda s: s["connected"], what="connected")
    time.sleep(8)
    m.set(flow=0)
    time.sleep(3)
    he.get("M3")
    m.stop()
    top_ml = sql(he, "SELECT MAX(ml) FROM telemetry WHERE meter='M3'")[0][0]
    assert "rollback" not in [x for x in he.meters() if x["id"] == "M3"][0]["alarms"]
    shutil.rmtree(d)
    _copy(w.tmp / "M3.yesterday", d)                  # restored, consistently
    m = w.start_meter("M3")
    m.wait(lambda s: s["connected"], what="connected")
    time.sleep(8)
    real = he.get("M3")["detail"]
    m.stop()
    row = [x for x in he.meters() if x["id"] == "M3"][0]
    print("max ml before", top_ml, "meter now", real["ml"], "alarms", row["alarms"],
          he.alarms("M3")[:3])
    assert real["ml"] < top_ml                        # the rollback happened on the meter
    assert "rollback" in row["alarms"] and "seq_conflict" in row["alarms"]
    regs = {a["detail"].split()[0] for a in he.alarms("M3") if a["kind"] == "rollback"}
    # get state's outbox sequence went back (the command counter does not
    # show it: the head-end's next command is above both)
    assert "oq" in regs, regs
    assert row["ml"] == top_ml                        # the row keeps the highest register


# ---- a customer who read their own meter's flash (uplink key included) ----
# The tag stops everyone else; for this one the head-end's record rules are
# what is left: ingest() is driven directly, as the broker would deliver.
def _dumped(tmp_path):
    import secrets

    from comms import sign
    from headend import HeadEnd
    master = secrets.token_bytes(32)
    he = HeadEnd(tmp_path / "he.sqlite", master)
    sql(he, "INSERT INTO meters (id, region) VALUES ('M1', 1)")
    uk = sign.uplink_key(sign.meter_key(master, "M1"))

    def put(chan, recs):
        he.ingest("M1", chan, codec.seal_up(uk, f"m/M1/{chan}", codec.batch(recs)))
    return he, uk, put


def _tele(seq, t, ml, bal):
    r = codec.tele(t, ml, bal, 0, 1, 1, 0, -50)
    codec.set_seq(r, seq)
    return r


def _ev(seq, evs, code):
    r = codec.event(evs, 1_800_000_000, code, 0)
    codec.set_seq(r, seq)
    return r


def _kinds(he):
    return [a["kind"] for a in he.alarms("M1")]


def test_own_key_forgeries_meet_the_record_rules(tmp_path):
    he, uk, put = _dumped(tmp_path)
    put("t", [_tele(1, 1_800_000_000, 1000, 500)])
    put("t", [_tele(1, 1_800_000_000, 1000, 500)])          # a QoS 1 repeat: no alarm
    assert _kinds(he) == []
    put("t", [_tele(0xFFFFFFFF, 1_800_000_100, 0, 900_000_000)])   # freeze the row
    assert _kinds(he) == ["seq_jump"]
    row = he.meters()[0]
    assert row["bal"] == 500 and "seq_jump" in row["alarms"]
    # pre-occupy the next sequences: refused as a jump only past the outbox;
    # the genuine records that follow conflict and say so
    put("e", [_ev(2, 1, 28)])
    put("e", [_ev(2, 1, 20)])
    assert _kinds(he)[-1] == "seq_conflict"
    # registers backwards: stored, flagged, the row keeps the highest
    n = len(_kinds(he))
    put("t", [_tele(3, 1_800_000_200, 0, 900_000)])             # 1 L back: a power cut's loss
    assert len(_kinds(he)) == n
    put("t", [_tele(4, 1_800_000_200, 5_000_000, 900_000)])
    put("t", [_tele(5, 1_800_000_300, 1000, 900_000)])          # 4.999 m3 back
    assert _kinds(he)[-1] == "rollback" and he.meters()[0]["ml"] == 5_000_000
    put("e", [_ev(6, 5, 20), _ev(7, 3, 20)])
    assert _kinds(he)[-1] == "rollback"
    # an untagged copy of a genuine batch, or a tag moved to another topic
    body = codec.batch([_tele(8, 1_800_000_300, 6_000_000, 400)])
    he.ingest("M1", "t", body)
    he.ingest("M1", "e", codec.seal_up(uk, "m/M1/t", body))
    assert _kinds(he)[-2:] == ["forged_uplink", "forged_uplink"]
    assert sql(he, "SELECT COUNT(*) FROM telemetry WHERE seq = 8") == [(0,)]


def test_an_ack_moved_to_another_command_is_refused(tmp_path):
    he, uk, put = _dumped(tmp_path)
    sent = codec.seal(he.meter_key("M1"), "m/M1/c", codec.command(7, "topup", a=1, s=1, v=5))
    he._sent[("M1", 7)] = codec.command_hash(sent)
    other = codec.seal(he.meter_key("M1"), "m/M1/c", codec.command(7, "get", w="state"))
    he.ingest("M1", "a", codec.seal_up(uk, "m/M1/a", codec.ack(7, 0, 5, None, other)))
    assert ("M1", 7) not in he._acks and _kinds(he) == ["ack_mismatch"]
    he.ingest("M1", "a", codec.seal_up(uk, "m/M1/a", codec.ack(7, 0, 5, None, sent)))
    assert he._acks[("M1", 7)]["code"] == 0 and _kinds(he) == ["ack_mismatch"]
