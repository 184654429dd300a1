"""Forged acks in credit recovery (outside review of issue 10; docs/CARD.md
§5.2, §6). Acks on m/<id>/a are tagged with the meter's uplink key
(PROTOCOL.md §3.2), which a dump of the customer's own meter holds: with it
and the broker password from secrets.json they answer the office's
commands in the meter's place. The office's recovery of a top-up
"that never arrived" is a re-issue under the SAME key, so whatever a rogue
answers, the real meter applies it at most once. Real Mosquitto, TLS, ACL."""
import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from comms import codec, sign
from conftest import sql
from headend import HeadEndError


def _as_meter(w, mid):
    """A rogue client in the meter's place, answering every command ACCEPTED."""
    s = json.loads((w.tmp / mid / "secrets.json").read_text())    # the customer's flash dump
    up = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=mid, clean_session=False)
    c.username_pw_set(s["user"], s["pw"])
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda cl, ud, fl, rc, pr=None: (cl.subscribe(f"m/{mid}/c", 1), up.set())

    uk = sign.uplink_key(bytes.fromhex(s["mk"]))

    def on_cmd(cl, ud, msg):
        cmd = json.loads(msg.payload.rsplit(b"|", 1)[0])
        body = codec.ack(cmd["n"], 0, 0, None, msg.payload)          # "ACCEPTED"
        cl.publish(f"m/{mid}/a", codec.seal_up(uk, f"m/{mid}/a", body), qos=1)
    c.on_message = on_cmd
    c.connect(w.broker.host, w.broker.port)
    c.loop_start()
    assert up.wait(10)
    return c


def test_attack_forged_not_applied_ack_gives_no_second_credit(fresh_world):
    w = fresh_world
    he = w.he
    m = w.start_meter("M1")
    m.wait(lambda s: s["connected"], what="connected")
    a = he.topup("M1", 100_000, account=1)
    assert a["code"] == 0
    seq = a["seq"]
    bal0 = he.get("M1")["detail"]["bal"]
    # "my top-up never arrived"; the meter is taken off the network and a
    # rogue answers in its place
    m.kill()
    rogue = _as_meter(w, "M1")
    try:
        assert he.reissue("M1", 1, seq)["code"] == 0          # forged: "applied now"
        assert he.void("M1", 1, seq)["code"] == 0             # forged: "never applied"
        assert he.topup_status("M1", 1, seq)["status"] == "void"
        # the office never re-issues a key it believes voided (a refund)
        with pytest.raises(HeadEndError):
            he.reissue("M1", 1, seq)
    finally:
        rogue.disconnect()
        rogue.loop_stop()
    m.start()
    m.wait(lambda s: s["connected"], what="reconnected")
    time.sleep(1)
    # the re-issue that went to the rogue, sent again to the real meter: the
    # same key, so it answers USED and the balance stays
    topup = sql(he, "SELECT body FROM commands WHERE meter = 'M1' AND op = 'topup' ORDER BY n")
    assert len({r[0] for r in topup}) == 1, "a re-issue must carry the original key"
    r = he.topup("M1", 100_000, account=1, seq=seq)
    assert r["code"] == 1, r                                   # USED
    bal1 = he.get("M1")["detail"]["bal"]
    assert bal1 <= bal0, (bal0, bal1)
    # and the meter itself never voided: the genuine answer is USED
    assert he.void("M1", 1, seq)["code"] == 1
