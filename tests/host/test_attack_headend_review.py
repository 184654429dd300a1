"""A review's attacks on the head-end from a meter its customer controls
(docs/SECURITY.md D5, D6): the meter's own MQTT user and uplink key (a
flash dump gives both), answering the head-end's commands with whatever
it likes and publishing any record its key can sign. Real Mosquitto with
TLS and the project's ACL, the reference head-end, the store on SQLite and
PostgreSQL; the "meter" is a scripted MQTT client (tools/uplinksim.py's
shape), since no genuine firmware sends these."""

import json
import re
import threading
import time
from pathlib import Path

import codes
import paho.mqtt.client as mqtt
import pytest
from broker import Broker, meter_acl
from comms import codec, sign
from conftest import sql
from consolekit import Browser, make_app, users
from headend import ACKS_PER_COMMAND, ALARM_REPEAT, HISTORY_DEPTH, HeadEnd, HeadEndError
from office import OfficeKey

from utility import schema as st

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000


class RogueMeter:
    """Meter R1's MQTT connection, answering each command with
    answer(command dict) -> (code, value, detail) under its uplink key."""

    def __init__(self, w, answer):
        self.uk = sign.uplink_key(sign.meter_key(w.master, "R1"))
        self.answer, self.commands, self.raw = answer, [], []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="R1")
        self.c.username_pw_set("R1", sign.mqtt_password(w.master, "R1"))
        self.c.tls_set(ca_certs=w.broker.ca_file)
        up = threading.Event()
        self.c.on_connect = lambda *a: (self.c.subscribe("m/R1/c", 1), up.set())
        self.c.on_message = self._on_message
        self.c.connect(w.broker.host, w.broker.port)
        self.c.loop_start()
        assert up.wait(10)

    def _on_message(self, client, userdata, msg):
        cmd = json.loads(bytes(msg.payload).rsplit(b"|", 1)[0])
        self.commands.append(cmd)
        self.raw.append(bytes(msg.payload))
        got = self.answer(cmd)
        if got is not None:
            code, val, detail = got
            # not waited for here: this is paho's network thread, which reads the PUBACK
            self.publish("a", codec.ack(cmd["n"], code, val, detail, bytes(msg.payload)))

    def publish(self, chan, body):
        topic = f"m/R1/{chan}"
        return self.c.publish(topic, codec.seal_up(self.uk, topic, body), qos=1)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class World:
    def __init__(self, db):
        self.db = db
        self.master = bytes(range(32))
        self.he_pw = "headend-pw"
        self.broker = Broker(tls=True, users={"R1": sign.mqtt_password(self.master, "R1"),
                                              "headend": self.he_pw},
                             acl=meter_acl({"R1": 1}, ["headend"])).start()
        self.he = HeadEnd(db, self.master, self.broker.host, self.broker.admin_port, "headend",
                          self.he_pw, self.broker.ca_file, office=OfficeKey.generate()).connect()
        self.he.provision("R1", 1)

    def close(self):
        self.he.close()
        self.broker.stop()
        self.broker._dir.cleanup()


@pytest.fixture()
def world(store_url):
    w = World(store_url)
    yield w
    w.close()


def _day(seq):
    """A well-formed daily record: [seq, t, al, span, ml, dml, tc, chg, bal]."""
    return [seq, T0 + seq % 1000 * 86400, 0, 1, seq * 10_000, 10_000, seq * 5000, 5000, 1_000_000]


def test_attack_history_depth_is_the_firmware_rings():
    src = (ROOT / "firmware" / "storage" / "history.py").read_text()
    assert HISTORY_DEPTH == {"d": int(re.search(r"^DAYS = const\((\d+)\)", src, re.MULTILINE)[1]),
                             "m": int(re.search(r"^MONTHS = const\((\d+)\)", src, re.MULTILINE)[1])}


def test_attack_history_a_meter_that_pages_on_forever_is_stopped_at_its_rings_depth(world):
    """The head-end pages back until a page is empty: a meter that always
    has 8 more (seq falling from 2^32-1) kept the operator's request in a
    loop and wrote a history row and a ledger entry per record, without end
    (here it gives up after 40 pages, 320 records)."""
    def answer(cmd):
        if cmd["op"] != "history" or len(rogue.commands) > 40:
            return None
        top = cmd.get("b") or 1 << 32
        return 0, top - 1, [_day(top - 1 - i) for i in range(8)]
    rogue = RogueMeter(world, answer)
    try:
        with pytest.raises(HeadEndError, match="more d records than a meter keeps"):
            world.he.fetch_history("R1", "d", timeout=5)
    finally:
        rogue.close()
    stored = sql(world.he, "SELECT COUNT(*) FROM history WHERE meter = 'R1'")[0][0]
    assert stored <= HISTORY_DEPTH["d"] + 8 and len(rogue.commands) <= stored // 8 + 1
    assert [a["kind"] for a in world.he.alarms("R1")] == ["bad_history"]


BAD_PAGES = {
    "an object": {"seq": 1},
    "a string field": [[1, "<script>alert(1)</script>", 0, 1, 0, 0, 0, 0, 0]],
    "a float": [[1, T0, 0, 1, 0.5, 0, 0, 0, 0]],
    "NaN": [[1, T0, 0, 1, 0, 0, 0, float("nan"), 0]],
    "a negative charge": [[1, T0, 0, 1, 0, 0, 0, -5_000_000, 0]],
    "a charge past 64 bits": [[1, T0, 0, 1, 0, 0, 0, 1 << 64, 0]],
    "a time past 32 bits": [[1, 1 << 40, 0, 1, 0, 0, 0, 0, 0]],
    "a short record": [[1, T0, 0]],
    "a nested list": [[1, T0, 0, 1, [0], 0, 0, 0, 0]],
    "seq not falling": [_day(5), _day(5)],
    "nine records": [_day(20 - i) for i in range(9)],
}


def test_attack_history_a_malformed_page_is_refused_whole_with_its_reason(world):
    """What the meter's history ack carries goes into `history`, the ledger
    (a day's charge) and the meter's page: one field of the wrong type or
    range stored nothing of the page, raised HeadEndError with the reason
    (the console's action shows it) and an alarm; the meter page still
    renders. Before, a string field was stored as it came on SQLite (and
    the meter's page failed on it), PostgreSQL raised DataError, an object
    raised TypeError and a negative charge went to the ledger."""
    bad = iter(BAD_PAGES.items())
    current = {}

    def answer(cmd):
        if cmd["op"] == "history":
            return 0, 1, current["page"]
        return None
    rogue = RogueMeter(world, answer)
    try:
        for what, page in bad:
            current["page"] = page
            with pytest.raises(HeadEndError, match="malformed page") as e:
                world.he.fetch_history("R1", "d", timeout=5)
            assert "nothing of it stored" in str(e.value), what
    finally:
        rogue.close()
    assert sql(world.he, "SELECT COUNT(*) FROM history")[0][0] == 0
    assert sql(world.he, "SELECT COUNT(*) FROM ledger")[0][0] == 0
    # one each, up to the hourly repeat limit of a kind
    assert [a["kind"] for a in world.he.alarms("R1")] == ["bad_history"] * min(len(BAD_PAGES),
                                                                                ALARM_REPEAT)
    app = make_app(world.db)
    users(app, bob="viewer")
    page = Browser(app, "bob", "bobbob").get("/meters/R1")
    assert page.status_code == 200 and "<script>alert" not in page.text


def test_attack_a_record_beyond_64_bits_is_dropped_alone_with_its_reason(world):
    """The volume registers are unsigned 64-bit on the wire, the store's
    columns signed 64-bit: one record of 2^64-1 mL failed the whole
    message's INSERT (OverflowError on SQLite, DataError on PostgreSQL), so
    the genuine records beside it were lost with no reason but a log line.
    Now that record alone is dropped, with alarm `bad_record`; a get-state
    answer with such a register is stored (its mark is not)."""
    uk = sign.uplink_key(sign.meter_key(world.master, "R1"))
    recs = [codec.tele(T0, 10_000, 5_000_000, 0, codec.F_VALVE_OPEN, 1, 0, -60),
            codec.tele(T0 + 3600, (1 << 64) - 1, 5_000_000, 0, codec.F_VALVE_OPEN, 1, 0, -60),
            codec.summary(3, 3, 1, T0 + 3600, T0 + 3600, 1 << 63, 1 << 63, 5_000_000, 0),
            codec.event(1, T0 + 7200, 2, 1000)]
    for seq, r in enumerate(recs, 1):
        codec.set_seq(r, seq)
    assert world.he.ingest("R1", "t", codec.seal_up(uk, "m/R1/t", codec.batch(recs))) == 2
    assert sql(world.he, "SELECT seq, ml FROM telemetry") == [(1, 10_000)]
    assert sql(world.he, "SELECT seq FROM events") == [(4,)]
    assert sql(world.he, "SELECT ml FROM meters WHERE id = 'R1'") == [(10_000,)]
    rogue = RogueMeter(world, lambda cmd: (0, 0, {"id": "R1", "n": cmd["n"], "ml": 1 << 64})
                       if cmd["op"] == "get" else None)
    try:
        assert world.he.get("R1", timeout=5)["detail"]["ml"] == 1 << 64
    finally:
        rogue.close()
    assert [a["detail"] for a in world.he.alarms("R1")] == [
        f"seq 2: ml {(1 << 64) - 1} beyond 64 bits", f"seq 3: ml0 {1 << 63} beyond 64 bits",
        f"get state ml {1 << 64} beyond 64 bits"]


def test_attack_a_meters_alarm_flood_is_bounded_and_hides_no_other_alarm(world):
    """A customer's meter raises an alarm per publish at will (untagged
    junk: forged_uplink) and sends tamper events by the thousand under its
    own key. Before, each was a row: the store grew at the publisher's
    rate, and the alarms page (the newest 500 head-end alarms, the newest
    1000 alarm events) lost the meter's own rollback and every other
    meter's alarms under the flood. Now one kind is stored at most
    ALARM_REPEAT times per meter and hour, and the pages show one row per
    meter and kind with its count."""
    he, uk = world.he, sign.uplink_key(sign.meter_key(world.master, "R1"))
    now = time.time()

    def batch(recs, first):
        for seq, r in enumerate(recs, first):
            codec.set_seq(r, seq)
        return codec.seal_up(uk, "m/R1/e", codec.batch(recs))
    # the meter's volume falls by more than a power cut loses: rollback
    he.ingest("R1", "e", batch([codec.tele(T0, 5_000_000_000, 0, 0, 1, 1, 0, -60),
                                codec.tele(T0 + 3600, 1_000_000, 0, 0, 1, 1, 0, -60)], 1))
    with he.engine.begin() as c:      # another meter's alarms, an hour before the flood
        c.execute(st.events.insert().values(meter="M9", seq=1, evs=1, t=T0, code=codes.EV_LEAK,
                                            arg=0, received=now - 3600))
        c.execute(st.alarms.insert().values(meter="M9", kind="seq_jump", detail="seq 9000 after 1",
                                            received=now - 3600))
    for i in range(600):
        assert he.ingest("R1", "t", bytes([codec.VERSION]) + i.to_bytes(4, "big") * 10) == 0
    for k in range(11):
        evs = [codec.event(k * 100 + i + 1, T0 + 7200, codes.EV_TAMPER, 1) for i in range(100)]
        assert he.ingest("R1", "e", batch(evs, 3 + k * 100)) == 100
    kinds = [a["kind"] for a in he.alarms("R1")]
    assert kinds.count("forged_uplink") == ALARM_REPEAT and kinds.count("rollback") == 1
    app = make_app(world.db)
    users(app, bob="viewer")
    bob = Browser(app, "bob", "bobbob")
    page = bob.get("/alarms").text
    he_table = page.split('id="headend-alarms"')[1].split("</table>")[0]
    assert "rollback" in he_table and "M9" in he_table and "seq 9000 after 1" in he_table
    ev_table = page.split('id="event-alarms"')[1].split("</table>")[0]
    assert "M9" in ev_table and codes.event_name(codes.EV_LEAK) in ev_table
    assert '<td class="num">1100</td>' in ev_table
    assert "rollback" in bob.get("/meters/R1").text.split('id="he-alarms"')[1]


def test_attack_acks_are_stored_only_for_commands_sent_and_a_few_per_command(world):
    """The meter's owner publishes acks at will, each under its own tag:
    answers to commands never sent, n 0 (the answer to a region tariff),
    and many answers to one real command. Before, every one was an `acks`
    row (861 here); nothing ever reads an ack without its command, and a
    command has few genuine answers. The first answer still settles the
    top-up, once."""
    he, uk = world.he, sign.uplink_key(sign.meter_key(world.master, "R1"))
    rogue = RogueMeter(world, lambda cmd: (0, 1_000_000, None) if cmd["op"] == "topup" else None)
    try:
        a = he.topup("R1", 1_000_000, timeout=5)
    finally:
        rogue.close()
    assert a["code"] == 0 and he.topup_status("R1", 1, a["seq"])["status"] == "applied"
    cmd = rogue.raw[0]

    def ack(n, val, answered=cmd):
        return codec.seal_up(uk, "m/R1/a", codec.ack(n, 0, val, None, answered))
    for val in range(ACKS_PER_COMMAND - 1):         # the real command, answered again and again
        he.ingest("R1", "a", ack(a["n"], val))
    he.ingest("R1", "a", ack(a["n"], 1_000_000))     # the first answer again: a repeat, no alarm
    assert he.alarms("R1") == []
    for val in range(ACKS_PER_COMMAND, 60):
        he.ingest("R1", "a", ack(a["n"], val))
    for i in range(500):                            # commands never sent
        he.ingest("R1", "a", ack(1000 + i, 0, b"x"))
    for val in range(300):                          # n 0
        he.ingest("R1", "a", ack(0, val, b"x"))
    assert sql(he, "SELECT COUNT(*), MIN(n), MAX(n) FROM acks") == [(ACKS_PER_COMMAND, a["n"], a["n"])]
    assert sql(he, "SELECT COUNT(*), SUM(amount) FROM ledger") == [(1, 1_000_000)]
    assert [x["kind"] for x in he.alarms("R1")] == ["ack_flood"] * ALARM_REPEAT
