# The last N daily registers on a check card (card/signed_card.py, docs/CARD.md
# §4.6): MACed per meter, in the card's free slots, never over another
# meter's reading.
import codes
from card import records as R
from card import signed_card as SC
from test_card_rig import ISSUER, meter_rig, signed_card, tap


def _meter(mid, days):
    m, hw, s = meter_rig(meter_id=mid, reopen="auto", max_balance=10 ** 9, max_topup=10 ** 9)
    m.apply_credit("card", 1, 1, 100_000_000)
    hw.world.flow.set_rate_lph(7)
    for _ in range(days * 24):
        hw.clock.advance(3_600_000)
        m.poll()
    return m, hw, s


def _slots(c, doc):
    import json
    return SC.slots(len(json.dumps(doc)))


def _history(c, slots, mid):
    key = R.card_keys(ISSUER.meter_key(mid), c.uid)[1]
    parts = {}
    for s in slots:
        raw = b"".join(bytes(c.blocks[s * 4 + i]) for i in range(3))
        if raw[0] == R.MAGIC and raw[2] == SC.T_HISTORY and raw[8:16].rstrip(b"\x00") == mid.encode():
            h = SC.unpack_history(raw, key, c.uid)
            assert h is not None, "a history slot fails its MAC"
            parts[h[1]] = h
    return [d for p in sorted(parts) for d in parts[p][3]], parts


def _statuses(c, slots):
    out = []
    for s in slots:
        raw = b"".join(bytes(c.blocks[s * 4 + i]) for i in range(3))
        if raw[0] == R.MAGIC and raw[2] == R.T_STATUS:
            out.append(raw[8:16].rstrip(b"\x00").decode())
    return sorted(out)


def test_check_card_carries_the_last_days_of_each_meter():
    a, a_hw, a_s = _meter("M000001", 16)
    b, b_hw, b_s = _meter("M000002", 3)
    doc = {"k": "check", "r": 1, "n": 5, "x": a_hw.clock.time() + 86400, "h": 14}
    c = signed_card(R.CARD_CHECK, doc)
    assert tap(a_hw, a_s, c) == codes.ACCEPTED
    a_hw.world.reader.remove()
    assert tap(b_hw, b_s, c) == codes.ACCEPTED
    slots = _slots(c, doc)
    assert _statuses(c, slots) == ["M000001", "M000002"]
    for m, n in ((a, 14), (b, 3)):
        days, parts = _history(c, slots, m.cfg["meter_id"])
        recs = list(m.history.records("d", 0, 14))
        assert len(days) == n == len(recs)
        assert days == [(r[5] // 1000, r[7] // 1000) for r in recs]
        assert parts[0][2] == recs[0][1]            # the newest record's midnight
    # tapped again a day later: the same slots are rewritten, no more used
    used = sum(1 for s in slots if c.blocks[s * 4][0] == R.MAGIC)
    for _ in range(24):
        a_hw.clock.advance(3_600_000)
        a.poll()
    a_hw.world.reader.remove()
    assert tap(a_hw, a_s, c) == codes.ACCEPTED
    assert sum(1 for s in slots if c.blocks[s * 4][0] == R.MAGIC) == used
    days, _ = _history(c, slots, "M000001")
    assert days[0] == (a.history.record("d", a.history.newest("d"))[5] // 1000,
                       a.history.record("d", a.history.newest("d"))[7] // 1000)


def test_history_never_displaces_another_meters_reading():
    doc = {"k": "check", "r": 1, "n": 5, "x": 0, "h": 42}
    meters = [_meter("M00000%d" % i, 43) for i in (1, 2, 3)]
    doc["x"] = meters[0][1].clock.time() + 86400
    c = signed_card(R.CARD_CHECK, doc)
    slots = _slots(c, doc)
    for m, hw, s in meters:
        assert tap(hw, s, c) == codes.ACCEPTED
        hw.world.reader.remove()
    # M1 took 1 + 7 slots, M2 its reading and what was left; M3's reading
    # took one of the history slots, never a reading
    assert len(slots) == 12
    assert _statuses(c, slots) == ["M000001", "M000002", "M000003"]
    got = [len(_history(c, slots, m[0].cfg["meter_id"])[0]) for m in meters]
    assert got == [36, 18, 0], got


def test_a_forged_or_torn_history_slot_is_refused():
    a, hw, s = _meter("M000001", 8)
    doc = {"k": "check", "r": 1, "n": 5, "x": hw.clock.time() + 86400, "h": 6}
    c = signed_card(R.CARD_CHECK, doc)
    assert tap(hw, s, c) == codes.ACCEPTED
    slots = _slots(c, doc)
    key = R.card_keys(ISSUER.meter_key("M000001"), c.uid)[1]
    for sct in slots:
        raw = bytearray(b"".join(bytes(c.blocks[sct * 4 + i]) for i in range(3)))
        if raw[2] == SC.T_HISTORY:
            assert SC.unpack_history(raw, key, c.uid) is not None
            raw[21] ^= 1                              # a litre more on the newest day
            assert SC.unpack_history(raw, key, c.uid) is None
            return
    raise AssertionError("no history slot written")
