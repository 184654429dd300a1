"""The paged `history` operation end to end: meter firmware on the unix
port, real Mosquitto (TLS, ACL), and the reference head-end storing the
frozen registers in SQLite (docs/PROTOCOL.md §4.6.1)."""

from conftest import sql, wait_for

ACCEPTED, FORMAT, RANGE = 0, 2, 3
DAY = 86400


def test_head_end_pages_the_daily_registers_into_sqlite(fresh_world):
    he = fresh_world.he
    m = fresh_world.start_meter("M1", flow=120)
    m.wait(lambda s: s["connected"], what="M1 connected over TLS")
    he.topup("M1", 50_000_000, account=1)
    t0 = he.get("M1", "state")["detail"]["t"]
    days = 11                                   # more than one page of 8
    for i in range(1, days + 1):
        assert he.timesync("M1", t0 + i * DAY)["code"] == ACCEPTED
        wait_for(lambda i=i: he.command("M1", "history", k="d")["val"] >= i, what=f"day {i} frozen")
    assert he.fetch_history("M1") == days
    rows = he.history("M1")
    assert [r["seq"] for r in rows] == list(range(1, days + 1))
    for a, b in zip(rows, rows[1:]):
        assert b["ml"] - b["dml"] == a["ml"] and b["tc"] - b["chg"] == a["tc"]
        assert b["t"] == a["t"] + DAY and b["t"] % DAY == 0
    assert sum(r["dml"] for r in rows) > 0
    # a second fetch asks one page and stores nothing twice
    assert he.fetch_history("M1") == 0
    assert len(he.history("M1")) == days
    # typed fields, through the meter's check table
    assert he.command("M1", "history", k="d", c=9)["code"] == RANGE
    assert he.command("M1", "history", k="d", b="1")["code"] == FORMAT
    alarms = he.command("M1", "history", k="a")
    assert alarms["code"] == ACCEPTED and len(alarms["detail"]["h"]) == 6
    m.stop()


def test_head_end_adds_arrears_once_and_a_top_up_repays_its_share(fresh_world):
    he = fresh_world.he
    m = fresh_world.start_meter("M1", tariff={"v": 1, "at": 0, "b": [[0, 350_000]], "sc": 0,
                                              "dr": [20, 0]})
    m.wait(lambda s: s["connected"], what="M1 connected over TLS")
    a = he.add_arrears("M1", 1_000_000)
    assert a["code"] == ACCEPTED and a["val"] == 1_000_000 and a["seq"] == 1
    again = he.add_arrears("M1", 1_000_000, seq=1)      # no ack seen: sent again
    assert again["code"] == 1 and again["val"] == 1_000_000   # used: nothing added
    he.topup("M1", 2_000_000, account=1)
    st = he.get("M1", "state")["detail"]
    assert st["dbt"] == 1_000_000 - 400_000
    rows = sql(he, "SELECT seq, amount, code, debt FROM arrears WHERE meter = 'M1'")
    assert rows == [(1, 1_000_000, 1, 1_000_000)]
    m.stop()
