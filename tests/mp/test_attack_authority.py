# Issue 10, item 3 and "authority beyond one meter is asymmetric": the
# customer dumps the flash of their own meter A and, with everything found
# there, tries to set a free tariff (price 0, version 2^31 - 1) on meter B
# of the same region: by tariff card and over MQTT. Each attempt must be
# refused, B's tariff must not move, and afterwards everything the utility
# sends (region tariff, per-meter tariff, tariff card) must still be
# accepted. Fails if any forgery works.
import json
from binascii import unhexlify

import codes
import officekit
from card import records as R
from card import signed_card as SC
from card.keys import testing_issuer, testing_meter_keys, MeterKeys
from card.mfrc522 import MFRC522
from card.session import Session
from comms import codec, sign
from commskit import make_link, send, region_tariff, command, events
from simkit import run
from test_card_rig import signed_card, tap, apply_plan, ClassicCard, ISSUER

MASTER = bytes(range(32))                 # the head-end's master (never in a meter)
FREE = {"k": "tariff", "r": 1, "v": 2 ** 31 - 1, "at": 0, "b": [[0, 0]], "sc": 0}


def _dump_of_meter_a():
    """secrets.json of meter M000001 as provisioning writes it, i.e. all a
    flash dump gives: its own MQTT and card keys and the office's PUBLIC key."""
    d = {"id": "M000001", "mk": sign.meter_key(MASTER, "M000001").hex(),
         "user": "M000001", "pw": sign.mqtt_password(MASTER, "M000001"),
         "card": testing_issuer().meter_secrets("M000001")}
    d.update(officekit.secrets())
    return json.loads(json.dumps(d))      # as read back from the file


def _meter_b():
    link, m, hw, b, rt = make_link(meter_key=sign.meter_key(MASTER, "M000002"),
                                   meter_id="M000002")
    link.step()
    rc = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock)
    s = Session(rc, m, testing_meter_keys("M000002"), hw.clock)
    return link, m, hw, b, s


def _symmetric_keys(dump):
    """Every byte string in the dump that could serve as a MAC key."""
    keys = [unhexlify(dump["mk"]), unhexlify(dump["card"]["rec"])]
    keys += [unhexlify(v) for v in dump["office"].values()]
    return keys


def _old_style_tariff_card(uid, key_a_of, mac_key):
    """The pre-fix tariff card: a header and a MACed tariff record (record
    type 3), its sectors opened by key_a_of(uid, sector)."""
    from card.mifare import access_bytes, trailer
    import struct
    c = ClassicCard(uid)
    h = R.Header(R.CARD_TARIFF, 1, "", 0, 1, 1)
    body = struct.pack("<BBBBIIIB", R.MAGIC, R.VERSION, 0x03, 1, FREE["v"], 0, 0, 1)
    body += struct.pack("<HBI", 0, 0, 0) + bytes(40 - len(body) - 7)
    rec = body + R.hmac_sha256(mac_key, uid + body)[:8]
    plan = [(4, R.pack_header(mac_key, uid, h)[:16]), (5, R.pack_header(mac_key, uid, h)[16:]),
            (8, rec[:16]), (9, rec[16:32]), (10, rec[32:48])]
    for s in (0, 1, 2):
        plan.append((4 * s + 3, trailer(key_a_of(uid, s), access_bytes(0, 0, 0, 1), b"\xff" * 6)))
    apply_plan(c, plan)
    return c


def _genuine_body(v):
    return json.dumps({"k": "tariff", "r": 1, "v": v, "at": 0, "b": [[0, 900_000]], "sc": 0}).encode()


def test_free_tariff_forged_from_a_dump_is_refused_by_another_meter():
    dump = _dump_of_meter_a()
    link, m, hw, b, s = _meter_b()
    tv0 = m.billing.tariff.version
    results = []
    # 1. tariff cards in the old symmetric format, keyed and MACed with every
    #    key in the dump, sectors opened by A's card secret or the public key A
    a_keys = MeterKeys.from_secrets(dump["card"], allow_test=True)
    uid = b"\xa1\xa2\xa3\x01"
    for key_a_of in (lambda u, sec: a_keys.key_a(u, sec, 1), lambda u, sec: SC.key_a(u, sec)):
        for mk in _symmetric_keys(dump):
            hw.world.reader.remove()
            results.append(tap(hw, s, _old_style_tariff_card(uid, key_a_of, mk)))
    # 2. office-format tariff cards: signed with a key of the forger's own,
    #    with junk, and with a genuine office signature of another tariff
    body = json.dumps(FREE).encode()
    seen = officekit.sign(b"tariff", _genuine_body(2))    # e.g. read off the region topic
    for sig in (officekit.sign(b"tariff", body, 0xBADC0FFEE), bytes(64), seen):
        for v in (FREE["v"], tv0 + 1):               # the issue's version, and one in range
            d = dict(FREE, v=v)
            bd = json.dumps(d).encode()
            c = ClassicCard(uid)
            apply_plan(c, SC.plan_issue(ISSUER, uid, R.CARD_TARIFF, bd, sig))
            hw.world.reader.remove()
            results.append(tap(hw, s, c))
    # 3. the same over MQTT: a region tariff with each forged signature, and
    #    a per-meter tariff command sealed with meter A's own key
    for sig in (officekit.sign(b"tariff", body, 0xBADC0FFEE), seen):
        for v in (FREE["v"], tv0 + 1):
            bd = json.dumps(dict(FREE, v=v)).encode()
            send(link, b, bd + b"|" + sig.hex().encode(), link.t_tariff)
    forged_cmd = codec.seal(unhexlify(dump["mk"]), link.t_cmd,
                            codec.command(1, "tariff", tar={"v": FREE["v"], "at": 0,
                                                            "b": [[0, 0]], "sc": 0}))
    a = send(link, b, forged_cmd)
    run(m, hw, 5)
    assert a[0]["code"] == codes.SIGNATURE
    assert codes.ACCEPTED not in results and codes.USED not in results, results
    assert m.billing.tariff.version == tv0 and m.staged is None, "a forged tariff took effect"
    rejected = {e[3] for e in events(m, codes.EV_TARIFF_REJECTED)}
    assert codes.SIGNATURE in rejected and codes.RANGE in rejected, rejected

    # nothing the utility sends afterwards is blocked
    send(link, b, region_tariff(v=tv0 + 1, at=0, b=[[0, 900_000]], sc=0), link.t_tariff)
    run(m, hw, 1)
    assert m.billing.tariff.version == tv0 + 1, "the genuine region tariff"
    a = send(link, b, command(link, 2, "tariff", key=sign.meter_key(MASTER, "M000002"),
                              tar={"v": tv0 + 2, "at": 0, "b": [[0, 950_000]], "sc": 0}))
    run(m, hw, 1)
    assert a[0]["code"] == codes.ACCEPTED and m.billing.tariff.version == tv0 + 2, "per-meter tariff"
    hw.world.reader.remove()
    card = signed_card(R.CARD_TARIFF, dict(FREE, v=tv0 + 3, b=[[0, 990_000]]), uid=b"\xa1\xa2\xa3\x02")
    assert tap(hw, s, card) == codes.ACCEPTED
    run(m, hw, 1)
    assert m.billing.tariff.version == tv0 + 3, "a genuine tariff card"


def test_the_dump_holds_no_key_shared_with_another_meter():
    dump_a = _dump_of_meter_a()
    # meter B's secrets, provisioned the same way
    mk_b = sign.meter_key(MASTER, "M000002")
    rec_b = testing_issuer().meter_key("M000002")
    held = set(_symmetric_keys(dump_a))
    assert mk_b not in held and rec_b not in held
    assert "rk" not in dump_a and "reg" not in dump_a["card"] and "ma" not in dump_a["card"]
    # the office keys in it are public keys (64-byte curve points), nothing to sign with
    for pub in dump_a["office"].values():
        assert len(unhexlify(pub)) == 64


def test_per_meter_tariff_path_stays_per_meter():
    link, m, hw, b, s = _meter_b()
    tar = {"v": m.billing.tariff.version + 1, "at": 0, "b": [[0, 1]], "sc": 0}
    # meter A's key on meter B's command topic: refused
    a = send(link, b, command(link, 1, "tariff", key=sign.meter_key(MASTER, "M000001"), tar=tar))
    assert a[0]["code"] == codes.SIGNATURE and m.staged is None
    # B's own key: accepted
    a = send(link, b, command(link, 2, "tariff", key=sign.meter_key(MASTER, "M000002"), tar=tar))
    assert a[0]["code"] == codes.ACCEPTED


def test_forged_multi_meter_cards_lock_out_their_uid_only():
    # each forged signature costs a verify (seconds on an ESP32): the
    # lockout counts SIGNATURE per UID, so one card cannot keep the CPU busy,
    # and a genuine card of another UID still works
    from card import lockout as L
    link, m, hw, b, s = _meter_b()
    forged = signed_card(R.CARD_TARIFF, dict(FREE, v=m.billing.tariff.version + 1),
                         uid=b"\xb1\xb2\xb3\x01", d=0xBADC0FFEE)
    got = []
    for _ in range(L.LOCK_AFTER + 1):
        hw.world.reader.remove()
        got.append(tap(hw, s, forged))
    assert got[:L.LOCK_AFTER] == [codes.SIGNATURE] * L.LOCK_AFTER and got[-1] == codes.LOCKED_OUT, got
    hw.world.reader.remove()
    ok = signed_card(R.CARD_TARIFF, dict(FREE, v=m.billing.tariff.version + 1, b=[[0, 800_000]]),
                     uid=b"\xb1\xb2\xb3\x02")
    assert tap(hw, s, ok) == codes.ACCEPTED
