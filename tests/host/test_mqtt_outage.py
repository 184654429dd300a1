"""Outages while water flows: the broker goes away and comes back, the meter
loses power while offline, commands wait for a meter that is away. Metering
never stops, nothing in the outbox is lost, and everything arrives in order."""

import time

from conftest import sql, wait_for


def uplink_seqs(he, meter):
    rows = sql(he, "SELECT seq FROM telemetry WHERE meter = :m UNION "
               "SELECT seq FROM events WHERE meter = :m ORDER BY 1", m=meter)
    return [r[0] for r in rows]


def test_broker_outage_and_power_cut_while_water_flows(fresh_world):
    w = fresh_world
    he = w.he
    m = w.start_meter("M1", flow=600)
    m.wait(lambda s: s["connected"], what="connected")
    assert he.topup("M1", 50_000_000)["code"] == 0          # opens the valve (reopen auto)
    m.wait(lambda s: s["ml"] > 0, what="water flowing")
    wait_for(lambda: len(he.telemetry("M1")) >= 2, what="telemetry before the outage")

    w.broker.stop()                                          # the outage begins
    m.wait(lambda s: not s["connected"], what="link down")
    before = m.status()
    m.wait(lambda s: s["outbox"] >= 4 and s["ml"] > before["ml"] + 10_000, timeout=30,
           what="records piling up while metering goes on")
    m.kill()                                                 # and then the power goes
    m = w.start_meter("M1")                                  # power back, network still down
    m.set(flow=600)
    m.wait(lambda s: s["outbox"] >= 5, what="outbox restored from flash")
    held = m.status()["outbox"]

    w.broker.start()                                         # the network is back
    m.wait(lambda s: s["connected"] and s["outbox"] == 0, timeout=30, what="outbox drained")
    st = m.status()
    assert st["connects"] >= 1 and held >= 5
    def complete():
        q = uplink_seqs(he, "M1")
        return q and q == list(range(1, q[-1] + 1)) and q[-1] >= st["ob_next"] - 1

    wait_for(complete, timeout=20, what="every record, in order, no gap")
    tel = he.telemetry("M1")
    assert tel[-1]["ml"] > before["ml"]
    # the link subscribed again: commands work
    assert he.get("M1", "state")["code"] == 0
    m.stop()


def test_commands_wait_for_a_meter_that_is_away(fresh_world):
    w = fresh_world
    he = w.he
    m = w.start_meter("M2")
    m.wait(lambda s: s["connected"], what="connected")
    m.stop()                                   # offline; its broker session stays
    sent = he.topup("M2", 1_000_000, timeout=None)
    n = sent["n"]
    time.sleep(0.5)
    m = w.start_meter("M2")
    a = he.wait_ack("M2", n, timeout=20)
    assert a["code"] == 0 and a["val"] == 1_000_000
    assert he.topup_status("M2", 1, sent["seq"]) == {"status": "applied", "code": 0}
    # the head-end retries as if it had missed the ack: applied once only
    row = sql(he, "SELECT seq FROM topups WHERE meter = 'M2'")[0]
    assert he.topup("M2", 1_000_000, seq=row[0])["result"] == "used"
    assert he.get("M2", "state")["detail"]["bal"] == 1_000_000
    m.stop()
