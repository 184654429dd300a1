"""The reference head-end on utility.store, on SQLite and on a real
PostgreSQL server (the store_url fixture), with Mosquitto (TLS, ACLs) and a
meter process: ingestion, top-up and acks, and everything a meter or the
broker delivers twice stored once (docs/HEADEND.md §1.3).

Two head-ends share the store and both take every message (two processes
on one database, as during a worker hand-over), and then every uplink the
meter sent is published again: the keys must hold each record, ack and
credit once."""

import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from conftest import ROOT, World, _need_mosquitto, sql, wait_for

AMOUNT = 500_000


def _spy(w):
    """A second admin client: records every publish under m/M1/, and can
    publish there (the ACL lets admins write m/#)."""
    seen, up = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
    c.username_pw_set("headend", w.he_password)
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda cl, *a: (cl.subscribe("m/M1/#", qos=1), up.set())
    c.on_message = lambda cl, u, msg: seen.append((msg.topic, bytes(msg.payload)))
    c.connect(w.broker.host, w.broker.admin_port)
    c.loop_start()
    assert up.wait(10)
    return c, seen


def _counts(he):
    one = {t: sql(he, f"SELECT COUNT(*) FROM {t} WHERE meter = 'M1'")[0][0]
           for t in ("telemetry", "events", "acks", "topups", "ledger")}
    one["bal"] = sql(he, "SELECT bal FROM meters WHERE id = 'M1'")[0][0]
    return one


@pytest.fixture()
def world(tmp_path, store_url):
    _need_mosquitto()
    w = World(tmp_path, {"M1": 1}, db=store_url).start()
    yield w
    w.close()


def test_two_head_ends_and_replayed_uplinks_store_each_record_once(world):
    w, he = world, world.he
    he2 = w.headend(client_id="headend-2").connect()     # the same store, every message again
    spy, seen = _spy(w)
    try:
        m = w.start_meter("M1", report_s=60, flow=300)
        m.wait(lambda s: s["connected"], what="M1 connected")
        a = he.topup("M1", AMOUNT)
        assert a["result"] == "accepted", a
        assert he.topup_status("M1", 1, a["seq"]) == {"status": "applied", "code": 0}
        # telemetry and events flow (the credit runs at 300 L/h); the meters row follows
        wait_for(lambda: _counts(he)["telemetry"] >= 4, 40, "telemetry stored")
        m.stop()
        spy.publish("m/M1/s", b"0", qos=1)
        wait_for(lambda: sql(he, "SELECT online FROM meters WHERE id = 'M1'") == [(0,)], 10,
                 "M1 offline")
        before = _counts(he)
        uplinks = [(t, p) for t, p in seen if t.rsplit("/", 1)[1] in ("t", "e", "a")]
        assert {t for t, _ in uplinks} >= {"m/M1/t", "m/M1/a"}
        assert before["telemetry"] == sql(he, "SELECT COUNT(DISTINCT seq) FROM telemetry")[0][0]
        assert before["acks"] == 1 and before["topups"] == 1
        assert sql(he, "SELECT source, ref, amount FROM ledger") == [("topup", f"1/{a['seq']}", AMOUNT)]

        for topic, payload in uplinks * 2:                # each uplink twice more, to both
            spy.publish(topic, payload, qos=1)
        spy.publish("m/M1/s", b"1", qos=1)                # after them on the same session
        for h in (he, he2):
            wait_for(lambda h=h: sql(h, "SELECT online FROM meters WHERE id = 'M1'") == [(1,)],
                     10, "the replay ingested")
        wait_for(lambda: _counts(he) == before, 5, "nothing new from the replay")
        assert _counts(he) == before
        assert "seq_conflict" not in [x["kind"] for x in he.alarms("M1")]

        # the top-up sent again under its own key: the meter answers used, the
        # ledger keeps one credit and the meter's balance moves once
        m = w.start_meter("M1", report_s=60)
        m.wait(lambda s: s["connected"], what="M1 back")
        again = he.topup("M1", AMOUNT, seq=a["seq"])
        assert again["result"] == "used", again
        assert sql(he, "SELECT COUNT(*), SUM(amount) FROM ledger") == [(1, AMOUNT)]
        assert he.void("M1", 1, a["seq"])["result"] == "used"     # applied: still one credit
        assert sql(he, "SELECT COUNT(*), SUM(amount) FROM ledger") == [(1, AMOUNT)]
        assert sql(he, "SELECT COUNT(*) FROM topups") == [(1,)]
        assert he.topup_status("M1", 1, a["seq"])["status"] == "applied"
    finally:
        spy.loop_stop()
        spy.disconnect()
        he2.close()
        he2.engine.dispose()


def _cli(cwd, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "headend.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_the_command_line_takes_a_database_url(tmp_path, store_url):
    url = store_url
    p = _cli(tmp_path, "--db", url, "init")
    assert p.returncode == 0, p.stderr
    # a URL has no file to put the keys beside: headend.* in the working directory
    assert (tmp_path / "headend.master").exists() and (tmp_path / "headend.office.pem").exists()
    for m in ("M7", "M8"):
        assert _cli(tmp_path, "--db", url, "provision", m, "--region", 4).returncode == 0
    p = _cli(tmp_path, "--db", url, "meters")
    assert p.returncode == 0, p.stderr
    assert [ln.split()[:2] for ln in p.stdout.splitlines()[1:]] == [["M7", "4"], ["M8", "4"]]
    # balances to the unit, with integers (it printed a float's '-0.00' and '4.99')
    import sqlalchemy as sa

    from utility import schema as S
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.update(S.meters).where(S.meters.c.id == "M7").values(bal=-481))
        c.execute(sa.update(S.meters).where(S.meters.c.id == "M8").values(bal=498_674))
    eng.dispose()
    p = _cli(tmp_path, "--db", url, "meters")
    assert [ln.split()[3] for ln in p.stdout.splitlines()[1:]] == ["-0.00481", "4.98674"], p.stdout
    # a database that is not there: one line saying so
    gone = (url.rsplit("/", 1)[0] + "/nodb_here" if url.startswith("postgresql")
            else f"sqlite:///{tmp_path}/no/such/dir/he.sqlite")
    p = _cli(tmp_path, "--db", gone, "meters")
    assert p.returncode == 2 and "cannot open" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_two_head_ends_issuing_top_ups_at_once_never_share_a_key_or_a_counter(tmp_path, store_url):
    # no broker: a top-up is recorded and its command signed before it is
    # published, so an unconnected head-end stops right after both
    from headend import HeadEnd, HeadEndError
    master = bytes(32)
    heads = [HeadEnd(store_url, master) for _ in range(2)]
    sql(heads[0], "INSERT INTO meters (id, region) VALUES ('M1', 1)")
    errors, start = [], threading.Barrier(8)

    def issue(he):
        start.wait()
        for _ in range(10):
            try:
                he.topup("M1", 1000)
            except HeadEndError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=issue, args=(heads[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 80 and all("not connected" in e for e in errors), errors[:3]
    assert sql(heads[0], "SELECT COUNT(*), COUNT(DISTINCT seq) FROM topups") == [(80, 80)]
    assert sql(heads[0], "SELECT COUNT(*), COUNT(DISTINCT n) FROM commands") == [(80, 80)]
    assert sql(heads[0], "SELECT ctr FROM meters") == [(80,)]
    for he in heads:
        he.engine.dispose()


def _sealed(master, meter, recs):
    from comms import codec, sign
    uk = sign.uplink_key(sign.meter_key(master, meter))
    return codec.seal_up(uk, f"m/{meter}/t", codec.batch(recs))


def _tele(seq, ml):
    from comms import codec
    r = codec.tele(1_800_000_000 + seq * 3600, ml, 5000, 0, 1, 1, 0, -50)
    codec.set_seq(r, seq)
    return r


def test_two_workers_storing_a_new_meters_first_records_at_once_take_turns(pg_url):
    """A meter with no row in `meters` (its first records, or records ahead
    of its provisioning) reaches three workers at once: the first stores
    its batch and stops before the commit; the same batch redelivered to a
    second and another record under a taken sequence to a third wait for
    that commit (the per-meter lock needs no row), so the batch is stored
    once, neither fails, and the conflict is seen and flagged. With the
    old row lock (SELECT ... FOR UPDATE of the missing row) the third
    stored nothing and raised no seq_conflict."""
    from headend import HeadEnd
    master = bytes(range(32))
    first, second, third = (HeadEnd(pg_url, master) for _ in range(3))
    batch = _sealed(master, "N1", [_tele(1, 1000), _tele(2, 2000), _tele(3, 3000)])
    clash = _sealed(master, "N1", [_tele(2, 2500)])
    inside, go = threading.Event(), threading.Event()
    set_current = first._set_current

    def stop_before_commit(c, seen, now):
        set_current(c, seen, now)
        inside.set()
        assert go.wait(30)

    first._set_current = stop_before_commit
    got, errors = {}, []

    def run(name, he, payload):
        try:
            got[name] = he.ingest("N1", "t", payload)
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(f"{name}: {e!r}")

    a = threading.Thread(target=run, args=("first", first, batch))
    a.start()
    assert inside.wait(30), errors
    others = [threading.Thread(target=run, args=("second", second, batch)),
              threading.Thread(target=run, args=("third", third, clash))]
    for t in others:
        t.start()
    # both wait on a lock held by the first one's transaction (PostgreSQL says so)
    waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() " \
              "AND wait_event_type = 'Lock'"
    wait_for(lambda: sql(second, waiting) == [(2,)] or errors, what="both waiting on a lock")
    go.set()
    for t in [a, *others]:
        t.join(30)
    assert errors == []
    assert got == {"first": 3, "second": 0, "third": 0}
    assert sql(first, "SELECT seq, ml FROM telemetry ORDER BY seq") == [(1, 1000), (2, 2000), (3, 3000)]
    assert [x["kind"] for x in first.alarms("N1")] == ["seq_conflict"]
    for he in (first, second, third):
        he.engine.dispose()


def test_on_sqlite_the_meter_lock_holds_the_database_for_a_meter_with_no_row(tmp_path):
    """SQLite's per-meter lock is the database's write lock, taken by an
    UPDATE that matches no row as well: a second writer cannot begin."""
    import sqlite3

    from headend import HeadEnd
    he = HeadEnd(tmp_path / "he.sqlite", bytes(32))
    other = sqlite3.connect(tmp_path / "he.sqlite", timeout=0, isolation_level=None)
    try:
        with he.engine.begin() as c:
            he._lock_meters(c, ["N1"])
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        he.engine.dispose()
