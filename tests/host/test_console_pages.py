"""The console's pages against a real store (SQLite and PostgreSQL): logins,
roles, CSRF, the audit log, and pages that show what the store holds. The
expected figures are computed here from the rows the test inserts."""

import itertools
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import wait_for
from consolekit import Browser, insert, make_app, meter_world, rows, token, users

from utility import money
from utility import schema as st

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_767_600_000 + 40 * 86400          # the console's clock in these tests
PAGES = ["/meters", "/meters/M1", "/regions", "/revenue", "/alarms", "/tariffs", "/audit"]


@pytest.fixture()
def app(store_url):
    return meter_world(store_url, NOW)


def test_every_page_needs_a_login(app):
    c = app.test_client()
    for p in PAGES:
        r = c.get(p)
        assert r.status_code == 302 and r.location.startswith("/login"), p


def test_a_wrong_password_is_refused_and_audited(app):
    c = app.test_client()
    r = c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "alice",
                               "password": "wrong"})
    assert r.status_code == 200 and "Wrong name or password" in r.text
    assert c.get("/meters").status_code == 302
    (row,) = rows(app, st.audit, st.audit.c.action == "login")
    assert row.user == "alice" and row.result.startswith("refused")
    Browser(app, "alice", "alicealice")          # the right one works
    assert [r.result for r in rows(app, st.audit, st.audit.c.action == "login")] == [
        row.result, "ok"]


def test_a_pending_tariff_can_be_cancelled_once(app):
    with app.extensions["store"].begin() as c:
        c.execute(st.scheduled_tariffs.insert().values(
            region=1, version=3, body={"v": 3, "at": 0, "b": [[0, 1]], "sc": 0}, due=NOW + 60,
            status="pending", by_user="alice"))
    b = Browser(app, "alice", "alicealice")
    assert 'id="sched-1"' in b.get("/tariffs").text
    assert b.post("/tariffs/1/cancel").status_code == 302
    b.get("/tariffs")
    b.post("/tariffs/1/cancel")
    (row,) = rows(app, st.scheduled_tariffs)
    assert row.status == "cancelled" and row.result == "cancelled by alice"
    assert [r.result for r in rows(app, st.audit, st.audit.c.action == "tariff.cancel")] == [
        "cancelled", "refused: not pending"]


def test_bad_tariff_input_is_refused_with_its_reason(app):
    b = Browser(app, "alice", "alicealice")
    for form, why in [({"blocks": "1000:3.50"}, "last one unbounded"),
                      ({"blocks": "2000:1\n1000:2\n0:3"}, "must increase"),
                      ({"blocks": "0:abc"}, "bad block"),
                      ({"blocks": "0:1", "version": "x"}, "whole number"),
                      ({"blocks": "0:1", "due": "tomorrow"}, "not a time")]:
        b.get("/tariffs")
        data = {"scope": "region", "target": "1", "version": "2", **form}
        r = b.post("/tariffs", data)
        assert r.status_code == 400 and why in r.text, why
    assert rows(app, st.scheduled_tariffs) == []


def test_the_meters_page_shows_each_meters_stored_state(app):
    rnd = random.Random(7)
    ms = []
    for i in range(6):
        m = {"id": f"X{i}", "region": 1 + i % 2, "bal": rnd.randrange(-10**6, 10**8),
             "ml": rnd.randrange(10**9), "flags": rnd.choice([1, 0 | 1 << 1, 0 | 2 << 1]),
             "online": i % 2, "last_seen": NOW - rnd.randrange(3600), "building": f"B{i % 3}"}
        ms.append(m)
    insert(app, st.meters, ms)
    insert(app, st.events, [{"meter": "X3", "seq": 1, "evs": 1, "t": NOW, "code": 13, "arg": 0,
                             "received": NOW - 60}])
    b = Browser(app, "bob", "bobbob")
    page = b.get("/meters").text
    for m in ms:
        row = page.split(f'id="meter-{m["id"]}"')[1].split("</tr>")[0]
        assert money.fmt(m["bal"]) in row
        assert f'{m["ml"] // 1_000_000:,}.{m["ml"] % 1_000_000 // 1000:03d}' in row
        want = "open" if m["flags"] & 1 else ("closed (credit)" if m["flags"] >> 1 == 1
                                              else "closed (command)")
        assert f'class="valve">{want}<' in row
        assert ("online" if m["online"] else "offline") in row
        assert ("leak" in row) == (m["id"] == "X3")
    only2 = b.get("/meters?region=2").text
    assert all((f'id="meter-{m["id"]}"' in only2) == (m["region"] == 2) for m in ms)


def daily_telemetry(meter, start, litres_per_day):
    """Hourly-ish telemetry rows: 4 readings a day, day d using litres_per_day[d]."""
    out, ml, seq = [], 5_000_000, 0
    for d, litres in enumerate(litres_per_day):
        for k in range(4):
            seq += 1
            ml += litres * 1000 // 4 if k else 0
            out.append({"meter": meter, "seq": seq, "kind": 1, "t": start + d * 86400 + k * 6 * 3600,
                        "ml": ml, "bal": 0})
        ml += litres * 1000 - litres * 1000 // 4 * 3     # the rest of the day, before midnight
    return out


def litres_1(ml):
    """mL as litres with one decimal, rounded half up (the chart's labels)."""
    tenths = (ml * 10 + 500) // 1000
    return f"{tenths // 10:,}.{tenths % 10}"


def test_the_meter_page_charts_daily_consumption_from_telemetry(app):
    rnd = random.Random(3)
    litres = [rnd.randrange(50, 400) for _ in range(10)]
    start = NOW - 10 * 86400 - NOW % 86400
    rows_ = daily_telemetry("M1", start, litres)
    insert(app, st.telemetry, rows_)
    page = Browser(app, "bob", "bobbob").get("/meters/M1").text
    assert "from the telemetry (UTC days)" in page
    # each day: its last reading minus the day before's last (the first day: its own first)
    last = {}
    for r in rows_:
        last[r["t"] // 86400] = r["ml"]
    days = sorted(last)
    used = [last[days[0]] - rows_[0]["ml"]] + [last[b] - last[a] for a, b in itertools.pairwise(days)]
    for d, ml in zip(days, used):
        day = time.strftime("%Y-%m-%d", time.gmtime(d * 86400))
        assert f"<title>{day}: {litres_1(ml)} L</title>" in page, day


def test_the_meter_page_shows_a_battery_meters_cell(app):
    b = Browser(app, "bob", "bobbob")
    assert 'id="battery"' not in b.get("/meters/M1").text       # a mains meter: no row
    insert(app, st.battery, {"meter": "M1", "t": NOW - 60, "mv": 3581, "pct": 37, "days": 1204,
                             "received": NOW})
    cell = b.get("/meters/M1").text.split('id="battery">')[1].split("</td>")[0]
    assert cell == "37 % left, 3581 mV, about 1204 days"


def test_the_meter_page_prefers_the_meters_own_daily_registers(app):
    recs = [{"meter": "M1", "kind": "d", "seq": s, "t": NOW - (5 - s) * 86400, "al": 0, "span": 1,
             "ml": s * 10**6, "dml": s * 123_456, "tc": 0, "chg": s * 1000, "bal": 0}
            for s in range(1, 5)]
    insert(app, st.history, recs)
    insert(app, st.telemetry, daily_telemetry("M1", NOW - 5 * 86400, [1, 2, 3]))
    page = Browser(app, "bob", "bobbob").get("/meters/M1").text
    assert "from the daily registers" in page
    for r in recs:
        day = time.strftime("%Y-%m-%d", time.gmtime(r["t"] - 1))
        assert f"<title>{day}: {litres_1(r['dml'])} L</title>" in page


def test_regions_and_buildings_add_up_their_meters_consumption(app):
    rnd = random.Random(11)
    layout = {"A1": (5, "North"), "A2": (5, "North"), "A3": (5, "South"), "A4": (6, None)}
    insert(app, st.meters, [{"id": m, "region": r, "building": b, "online": 1}
                            for m, (r, b) in layout.items()])
    for m in layout:
        litres = [rnd.randrange(100, 300) for _ in range(40)]
        insert(app, st.telemetry, daily_telemetry(m, NOW - 40 * 86400, litres))
    page = Browser(app, "bob", "bobbob").get("/regions").text

    with app.extensions["store"].connect() as c:
        tel = c.execute(sa.select(st.telemetry.c.meter, st.telemetry.c.t, st.telemetry.c.ml)).all()

    def span_ml(m, s):
        inside = [ml for mm, t, ml in tel if mm == m and NOW - s <= t <= NOW]
        before = [ml for mm, t, ml in tel if mm == m and t < NOW - s]
        return max(inside) - (max(before) if before else min(inside))

    for s in (86400, 7 * 86400, 30 * 86400):
        north = sum(span_ml(m, s) for m in ("A1", "A2"))
        region5 = north + span_ml("A3", s)
        assert f">{region5 // 1000:,}<" in page.split('id="region-5"')[1].split("</tr>")[0]
        assert f">{north // 1000:,}<" in page.split('id="building-5-North"')[1].split("</tr>")[0]
    assert 'id="building-6' not in page     # A4 has no building
    # an operator moves A3 into North: the building's sums follow
    b = Browser(app, "alice", "alicealice")
    b.get("/meters/A3")
    assert b.post("/meters/A3/building", {"building": "North"}).status_code == 302
    page = b.get("/regions").text
    north = sum(span_ml(m, 86400) for m in ("A1", "A2", "A3"))
    assert f">{north // 1000:,}<" in page.split('id="building-5-North"')[1].split("</tr>")[0]
    assert 'id="building-5-South"' not in page
    (row,) = rows(app, st.audit, st.audit.c.action == "building")
    assert row.user == "alice" and row.target == "A3" and row.detail == {"building": "North"}


def test_revenue_adds_up_the_ledger_per_month_and_region(app):
    rnd = random.Random(5)
    insert(app, st.meters, [{"id": "R1a", "region": 1}, {"id": "R2a", "region": 2}])
    entries, want = [], {}
    for i in range(60):
        meter = rnd.choice(["M1", "R1a", "R2a"])
        source = rnd.choice(["topup", "charge", "arrears", "refund"])
        amount = rnd.randrange(1, 10**7)
        t = NOW - rnd.randrange(90 * 86400)
        entries.append({"meter": meter, "source": source, "ref": str(i),
                        "amount": amount,
                        "t": t, "recorded": NOW})
        month = time.strftime("%Y-%m", time.gmtime(t - (source == "charge")))
        key = (month, 2 if meter == "R2a" else 1)
        col = {"topup": "sold", "charge": "charged", "arrears": "arrears", "refund": "refunded"}
        want.setdefault(key, dict.fromkeys(col.values(), 0))[col[source]] += amount
    insert(app, st.ledger, entries)
    page = Browser(app, "bob", "bobbob").get("/revenue").text
    for (month, region), w in want.items():
        row = page.split(f'id="rev-{month}-{region}"')[1].split("</tr>")[0]
        cells = [c.split("<")[0] for c in row.split('class="num">')[1:]]
        assert cells == [money.fmt(w[k]) for k in ("sold", "charged", "arrears", "refunded")], month


def test_owed_now_counts_negative_balances_and_the_last_debt_register(app):
    insert(app, st.meters, [{"id": "D1", "region": 4, "bal": -250_000},
                            {"id": "D2", "region": 4, "bal": 10}])
    insert(app, st.arrears, [{"meter": "D2", "seq": 1, "amount": 900, "code": 0, "debt": 900},
                             {"meter": "D2", "seq": 2, "amount": 300, "code": 0, "debt": 1100},
                             {"meter": "D2", "seq": 3, "amount": 500, "code": 6, "debt": 0}])
    page = Browser(app, "bob", "bobbob").get("/revenue").text
    assert f'>{money.fmt(250_000 + 1100)}<' in page.split('id="debt-4"')[1].split("</tr>")[0]


def test_the_alarms_page_shows_recent_alarms_and_silent_meters(app):
    insert(app, st.meters, [{"id": "S1", "region": 1, "last_seen": NOW - 30 * 3600},
                            {"id": "S2", "region": 1, "last_seen": NOW - 2 * 3600},
                            {"id": "S3", "region": 1, "last_seen": None}])
    ev = [("S2", 1, 14, NOW - 3600), ("S2", 2, 12, NOW - 8 * 86400), ("M1", 1, 9, NOW - 60),
          ("M1", 2, 2, NOW - 60)]
    insert(app, st.events, [{"meter": m, "seq": s, "evs": s, "t": int(t), "code": c, "arg": 0,
                             "received": t} for m, s, c, t in ev])
    insert(app, st.alarms, [{"meter": "S2", "kind": "seq_jump", "detail": "seq 5000 after 3",
                             "received": NOW}])
    b = Browser(app, "bob", "bobbob")
    page = b.get("/alarms").text
    silent = page.split('id="silent"')[1].split("</table>")[0]
    assert "S1" in silent and "S3" in silent and "S2" not in silent and "M1" not in silent
    assert "S1" not in b.get("/alarms?hours=48").text.split('id="silent"')[1].split("</table>")[0]
    events = page.split('id="event-alarms"')[1].split("</table>")[0]
    assert "burst" in events and "valve-fault" in events
    assert "tamper" not in events and "credit<" not in events   # a week old; not an alarm
    assert "seq_jump" in page.split('id="headend-alarms"')[1]


def test_serve_command_line_runs_the_console_with_waitress(tmp_path):
    import socket
    import urllib.error
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "utility.web", "--db", str(tmp_path / "s.sqlite"),
                          "serve", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert "read-only" in p.stdout.readline()
        url = f"http://127.0.0.1:{port}"

        def get(path):
            try:
                return urllib.request.urlopen(url + path, timeout=5)
            except urllib.error.URLError:
                return None
        page = wait_for(lambda: get("/login"), timeout=20, what="the console answering")
        assert page.status == 200 and b'name="csrf_token"' in page.read()
        # no login: the meters page sends the browser to the login page
        assert get("/meters").url.startswith(url + "/login")
    finally:
        p.terminate()
        p.wait(10)


def test_provisioning_names_the_building_the_console_shows(tmp_path):
    db = str(tmp_path / "he.sqlite")
    he = [sys.executable, str(ROOT / "tools" / "headend.py"), "--db", db]

    def run(*args):
        p = subprocess.run(he + list(args), capture_output=True, text=True, cwd=ROOT, check=False)
        assert p.returncode == 0, p.stderr
    run("init")
    run("provision", "P1", "--region", "3", "--building", "Tower A")
    run("provision", "P2", "--region", "3", "--building", "Tower A")
    run("provision", "P1", "--region", "3")          # again, no building: it stays
    app = make_app(db)
    users(app, bob="viewer")
    page = Browser(app, "bob", "bobbob").get("/regions").text
    row = page.split('id="building-3-Tower A"')[1].split("</tr>")[0]
    assert '<td class="num">2</td>' in row


def test_adduser_command_line(tmp_path):
    db = str(tmp_path / "c.sqlite")
    cmd = [sys.executable, "-m", "utility.web", "--db", db, "adduser", "carol", "--role", "viewer"]
    p = subprocess.run(cmd, input="s3cret\n", capture_output=True, text=True, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr
    again = subprocess.run(cmd, input="x\n", capture_output=True, text=True, cwd=ROOT, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    bad = subprocess.run(cmd[:-1] + ["admin"], input="x\n", capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert bad.returncode == 2
    app = make_app(db)
    Browser(app, "carol", "s3cret")
    (u,) = rows(app, st.users)
    assert u.role == "viewer" and u.hash.startswith("$argon2id$") and "s3cret" not in u.hash
