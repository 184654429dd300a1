"""The console's actions end to end: Flask's test client -> the console ->
the HeadEnd on the same store (SQLite and PostgreSQL) -> real Mosquitto
(TLS, ACL) -> meter firmware on the unix port, and back. Roles, CSRF, the
audit row of each action, and scheduled tariffs published when due by an
injected clock, across a restart of the console."""

import calendar
import time

import pytest
import sqlalchemy as sa
from conftest import World, _need_mosquitto, wait_for
from consolekit import Browser, make_app, users
from headend import HeadEnd

from utility import money
from utility import schema as st
from utility.web.schedule import Scheduler, publish_due


@pytest.fixture()
def world(tmp_path, store_url):
    _need_mosquitto()
    w = World(tmp_path, meters={"C1": 1}, db=store_url).start()   # the HeadEnd on the store under test
    yield w
    w.close()


def audit_rows(app, **where):
    a = st.audit
    with app.extensions["store"].connect() as c:
        return c.execute(sa.select(a).where(*[a.c[k] == v for k, v in where.items()])
                         .order_by(a.c.id)).all()


def minute(t):
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t))


def test_actions_reach_the_meter_with_their_acks_and_audit_rows(world):
    clock = [calendar.timegm(time.gmtime()) // 60 * 60]
    app = make_app(world.db, headend=world.he, CLOCK=lambda: clock[0], ACK_TIMEOUT=20)
    users(app, alice="operator", bob="viewer")
    m = world.start_meter("C1")
    s0 = m.wait(lambda s: s["connected"] and s, what="C1 connected")
    alice, bob = Browser(app, "alice", "alicealice"), Browser(app, "bob", "bobbob")
    bob.get("/meters/C1")
    alice.get("/meters/C1")

    # a viewer's top-up and an operator's without its CSRF token never reach the meter
    assert bob.post("/meters/C1/topup", {"amount": "9.00"}).status_code == 403
    assert alice.post("/meters/C1/topup", {"amount": "9.00"}, csrf=False).status_code == 400

    r = alice.post("/meters/C1/topup", {"amount": "5.00"})
    assert r.status_code == 302
    m.wait(lambda s: s["bal"] == s0["bal"] + 500_000, what="C1 credited 5.00 once")
    (row,) = audit_rows(app, action="topup", user="alice")
    assert row.target == "C1" and "accepted (code 0)" in row.result
    assert row.detail == {"amount": 500_000, "account": 1}
    page = alice.get("/meters/C1").text
    assert "accepted (code 0), value " + str(s0["bal"] + 500_000) in page   # the flash
    cmds = page.split('id="commands"')[1].split("</table>")[0]
    assert "topup" in cmds and "accepted" in cmds

    alice.post("/meters/C1/valve", {"action": "close"})
    m.wait(lambda s: s["valve"] == 0, what="C1 valve closed by the console")
    alice.get("/meters/C1")
    alice.post("/meters/C1/valve", {"action": "open"})
    m.wait(lambda s: s["valve"] == 1, what="C1 valve open again")
    assert [r.result.split(" (")[0] for r in audit_rows(app, action="valve")] == ["accepted"] * 2

    alice.get("/meters/C1")
    alice.post("/meters/C1/config", {"key": "low1", "value": "3000000"})
    alice.get("/meters/C1")
    alice.post("/meters/C1/config", {"key": "no_such_key", "value": "1"})
    results = [r.result for r in audit_rows(app, action="config")]
    assert results[0].startswith("accepted") and results[1].startswith("unknown (code 13)")

    # a tariff for this meter, now: the meter's ack is the row's result
    v = s0["tv"] + 1
    alice.get("/meters/C1")
    alice.post("/tariffs", {"scope": "meter", "target": "C1", "version": str(v),
                            "blocks": "0:2.50"})
    m.wait(lambda s: s["tv"] == v, what=f"C1 on its own tariff v{v}")
    (sched,) = rows(app, st.scheduled_tariffs)
    assert sched.status == "published" and sched.result.startswith("ack accepted")
    assert sched.body == {"v": v, "at": 0, "b": [[0, 250_000]], "sc": 0}

    # a region tariff an hour ahead: not before it is due, and due after a restart
    alice.get("/tariffs")
    alice.post("/tariffs", {"scope": "region", "target": "1", "version": str(v + 1),
                            "blocks": "1000:1.50\n0:3.00", "standing": "0.2",
                            "due": minute(clock[0] + 3600)})
    assert publish_due(app) == []
    clock[0] += 3599
    assert publish_due(app) == []
    pending = [r for r in rows(app, st.scheduled_tariffs) if r.region == 1]
    assert [r.status for r in pending] == ["pending"]
    restarted = make_app(world.db, headend=world.he, CLOCK=lambda: clock[0])
    clock[0] += 1
    (done,) = publish_due(restarted)
    assert done[0] == pending[0].id and done[1].startswith("published")
    m.wait(lambda s: s["tv"] == v + 1, what=f"C1 on the region's tariff v{v + 1}")
    assert publish_due(restarted) == []          # once only
    (pub,) = audit_rows(restarted, action="tariff.publish", target="region 1")
    assert pub.user == "scheduler" and pub.result.startswith("published")
    assert pub.detail["by"] == "alice" and pub.detail["b"] == [[1000, 150_000], [0, 300_000]]

    # the meters page shows what the meter reported back (telemetry through the HeadEnd)
    t_now = m.status()["t"]

    def reported():
        with app.extensions["store"].connect() as c:
            r = c.execute(sa.select(st.meters.c.t, st.meters.c.bal)
                          .where(st.meters.c.id == "C1")).first()
        return r if r[0] is not None and r[0] >= t_now else None
    def shown():
        # the store's newest report, and the page rendered after it: a report
        # arriving in between moves the balance (the standing charge), so again
        r = reported()
        row = alice.get("/meters").text.split('id="meter-C1"')[1].split("</tr>")[0]
        return r is not None and money.fmt(r[1]) in row and "online" in row
    wait_for(shown, what="C1's reported balance on the meters page")

    # the meter's frozen registers, fetched from its page: its clock set to
    # just before a midnight (UTC, tz 0) so that it freezes a day
    midnight = (m.status()["t"] // 86400 + 1) * 86400
    assert world.he.timesync("C1", midnight - 20)["code"] == 0
    m.wait(lambda s: s["t"] > midnight + 5, what="C1 past midnight")
    alice.get("/meters/C1")
    alice.post("/meters/C1/history")
    (hist,) = audit_rows(app, action="history")
    with app.extensions["store"].connect() as c:
        stored = {k: c.execute(sa.select(sa.func.count()).select_from(st.history)
                               .where(st.history.c.kind == k)).scalar() for k in ("d", "m")}
    assert stored["d"] >= 1
    assert hist.result == f"{stored['d']} new daily, {stored['m']} new monthly records"
    assert "from the daily registers" in alice.get("/meters/C1").text

    m.stop()

    # the meter is off: the top-up waits for an ack in vain, and stays pending for a re-send
    app.config["ACK_TIMEOUT"] = 1
    alice.get("/meters/C1")
    alice.post("/meters/C1/topup", {"amount": "1.00"})
    last = audit_rows(app, action="topup")[-1]
    assert last.result.startswith("no ack from C1")
    with app.extensions["store"].connect() as c:
        status = c.execute(sa.select(st.topups.c.status).where(st.topups.c.amount == 100_000)).scalar()
    assert status == "pending"
    assert "no ack from C1" in alice.get("/meters/C1").text


def rows(app, table):
    with app.extensions["store"].connect() as c:
        return c.execute(sa.select(table).order_by(table.c.id)).all()


def test_the_scheduler_thread_publishes_what_a_crash_left_half_done(world):
    """A row left `publishing` (the console died mid-publish) goes back to
    pending at the next start, and the scheduler's thread publishes it."""
    clock = [time.time()]
    app = make_app(world.db, headend=world.he, CLOCK=lambda: clock[0])
    m = world.start_meter("C1")
    s0 = m.wait(lambda s: s["connected"] and s, what="C1 connected")
    v = s0["tv"] + 3
    with app.extensions["store"].begin() as c:
        c.execute(st.scheduled_tariffs.insert().values(
            region=1, version=v, body={"v": v, "at": 0, "b": [[0, 100_000]], "sc": 0},
            due=clock[0] - 60, status="publishing", by_user="alice"))
        c.execute(st.scheduled_tariffs.insert().values(
            region=1, version=v + 1, body={"v": v + 1, "at": 0, "b": [[0, 1]], "sc": 0},
            due=clock[0] + 86400, status="pending", by_user="alice"))
    app.config["SCHEDULER_INTERVAL"] = 0.1
    sched = Scheduler(app).start()
    try:
        m.wait(lambda s: s["tv"] == v, what=f"C1 on v{v}")
        wait_for(lambda: [r.status for r in rows(app, st.scheduled_tariffs)] ==
                 ["published", "pending"], what="the recovered row published, not the future one")
    finally:
        sched.stop()
    m.stop()


def test_with_ingestion_workers_an_action_finds_its_ack_in_the_store(world):
    """serve --ingest-workers: the console's HeadEnd does not take the
    uplink; another process (here the world's head-end, as a worker would)
    stores the ack, and the action reads it from the store."""
    console_he = HeadEnd(world.db, world.master, world.broker.host, world.broker.admin_port,
                         "headend", world.he_password, world.broker.ca_file, "console",
                         persistent=True, office=world.office, ingest=False).connect()
    heard = []                       # acks the console's own HeadEnd took off the broker
    console_he.on_ack.append(lambda meter, a: heard.append(a))
    try:
        app = make_app(world.db, headend=console_he, ACK_TIMEOUT=20)
        users(app, alice="operator")
        m = world.start_meter("C1")
        s0 = m.wait(lambda s: s["connected"] and s, what="C1 connected")
        alice = Browser(app, "alice", "alicealice")
        alice.get("/meters/C1")
        alice.post("/meters/C1/topup", {"amount": "2.00"})
        m.wait(lambda s: s["bal"] == s0["bal"] + 200_000, what="C1 credited 2.00")
        (row,) = audit_rows(app, action="topup")
        assert "accepted (code 0)" in row.result
        assert heard == []           # the ack came through the store
        m.stop()
    finally:
        console_he.close()
