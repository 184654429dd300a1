"""A region tariff broadcast through real Mosquitto reaches every meter of
the region (also one that comes online later: retained), not the meters of
another region, and a forged broadcast changes nothing."""

import json

from comms import codec
from office import OfficeKey

TARIFF = {"v": 5, "at": 0, "b": [[1000, 400_000], [0, 800_000]], "sc": 20_000}


def test_region_broadcast_reaches_every_meter_of_the_region(mqtt_world):
    w = mqtt_world
    he = w.he
    early = [w.start_meter(m) for m in ("M2", "M3", "M4")]
    other = w.start_meter("R2M1")
    for m in early + [other]:
        m.wait(lambda s: s["connected"], what=f"{m.id} connected")
    acks = {}
    he.on_ack.append(lambda meter, a: acks.setdefault(meter, a) if a["n"] == 0 else None)
    he.publish_tariff(TARIFF, region=1)
    for m in early:
        m.wait(lambda s: s["tv"] == 5, what=f"{m.id} on tariff 5")
    # a meter that comes online after the publish gets the retained copy
    late = w.start_meter("M5")
    late.wait(lambda s: s["tv"] == 5, what="late meter on tariff 5")
    from conftest import wait_for
    wait_for(lambda: all(acks.get(m.id, {}).get("val") == 5 for m in early + [late]),
             what="an ack with the new version from every meter of the region")
    assert other.status()["tv"] == 1 and "R2M1" not in acks
    # telemetry carries the tariff version to the head-end
    wait_for(lambda: {m["id"]: m["tv"] for m in he.meters()}.get("M5") == 5, what="M5 telemetry tv=5")
    for m in early + [late, other]:
        m.stop()


def test_forged_or_stale_broadcast_changes_nothing(mqtt_world):
    w = mqtt_world
    w.he.publish_tariff(TARIFF, region=1)   # (again, if this runs on its own)
    m = w.start_meter("M6")
    m.wait(lambda s: s["connected"] and s["tv"] == 5, what="M6 on the retained tariff")
    topic = "r/1/tariff"
    doc = {"k": "tariff", "r": 1, "v": 9, "at": 0, "b": [[0, 1]], "sc": 0}
    body = json.dumps(doc).encode()
    # signed with a key that is not the office's
    forged = body + b"|" + OfficeKey.generate().sign(b"tariff", body).hex().encode()
    w.he.client.publish(topic, forged, qos=1).wait_for_publish(5)
    # the old symmetric format (a region key's HMAC) is no longer understood
    w.he.client.publish(topic, codec.seal(b"x" * 32, topic, body), qos=1).wait_for_publish(5)
    m.wait(lambda s: s["evs"] >= 2)
    # genuine but older, or too far ahead: refused as old, and range
    w.he.publish_tariff({"v": 4, "at": 0, "b": [[0, 1]], "sc": 0}, region=1)
    w.he.publish_tariff({"v": 2**31 - 1, "at": 0, "b": [[0, 1]], "sc": 0}, region=1)
    from conftest import wait_for
    wait_for(lambda: {5, 2, 4, 3} <= {e[3] for e in w.he.get("M6", "log")["detail"] if e[2] == 11},
             what="signature, format, old and range rejections in M6's log")
    assert m.status()["tv"] == 5
    # the office's signed reset: a higher tariff epoch, any version
    w.he.publish_tariff({"v": 1, "at": 0, "b": [[0, 300_000]], "sc": 0, "e": 1}, region=1)
    m.wait(lambda s: s["tv"] == 1, what="M6 on the reset tariff (epoch 1, v1)")
    m.stop()


def test_fleet_command_reaches_the_region_once(mqtt_world):
    """An office-signed fleet command on r/<r>/fleet through real Mosquitto:
    acked once with its sequence by the region's meter, not by another
    region's; the same payload again changes nothing."""
    from conftest import wait_for
    w = mqtt_world
    m = w.start_meter("M5")
    other = w.start_meter("R2M1")
    for x in (m, other):
        x.wait(lambda s: s["connected"], what=f"{x.id} connected")
    acks = []
    w.he.on_ack.append(lambda meter, a: acks.append((meter, a)) if a["n"] == 0 else None)
    payload = w.he.publish_fleet("valvetest", region=1, meters=["M5"], f=1)
    n = json.loads(payload.rsplit(b"|", 1)[0])["n"]
    wait_for(lambda: ("M5", n) in [(mt, a["val"]) for mt, a in acks], what="M5 acks the fleet command")
    w.he.client.publish("r/1/fleet", payload, qos=1).wait_for_publish(5)   # a replay
    wait_for(lambda: 4 in {e[3] for e in w.he.get("M5", "log")["detail"] if e[2] == 33},
             what="the replay refused as old (event 33)")
    assert [mt for mt, a in acks if a["val"] == n] == ["M5"]
    m.stop()
    other.stop()
