# Card taps through the session: user, service and hostile cards.
import codes
from test_card_rig import (fake_rig, rig_tap, user_card, signed_card, card_status, load_credit,
                           apply_plan, meter_rig, tap, ISSUER, UID7, R, ClassicCard)
from card import lockout as L
from card.keys import testing_meter_keys, testing_issuer, MeterKeys
from card.session import Session


def test_no_card_poll_returns_none():
    r = fake_rig()
    assert r.session.poll() is None
    assert r.meter.events == []


def test_user_card_topup_then_used():
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    assert rig_tap(r, c) == codes.ACCEPTED
    assert r.meter.balance == 1_000_000
    a, b = card_status(c, h)
    assert (a.credit_seq, a.verdict) == (1, codes.ACCEPTED) and a.balance == 1_000_000 and a.gen == 1
    assert b is None
    # the card stays on the reader: it was halted, so it is not read again
    assert r.session.poll() is None
    r.model.remove()
    assert rig_tap(r, c) == codes.USED
    assert r.meter.balance == 1_000_000
    a, b = card_status(c, h)
    assert b.gen == 2 and (b.credit_seq, b.verdict) == (1, codes.USED)
    # a new purchase: seq 2
    r.model.remove()
    load_credit(c, h, 250_000, 2)
    assert rig_tap(r, c) == codes.ACCEPTED
    assert r.meter.balance == 1_250_000
    a, b = card_status(c, h)
    assert a.gen == 3 and (a.credit_seq, a.verdict) == (2, codes.ACCEPTED)


def test_7_byte_uid_4k_user_card():
    r = fake_rig()
    c, h = user_card(uid=UID7, size=4096, amount=5000, seq=3)
    assert rig_tap(r, c) == codes.ACCEPTED
    assert r.meter.balance == 5000


def _rejected(r, c, code):
    r.model.remove()
    got = rig_tap(r, c)
    assert got == code, (got, code)
    assert r.meter.events[-1] == (codes.EV_CARD_REJECTED, code)


def test_cloned_card_same_uid_is_used_not_reapplied():
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    clone = c.clone_to()           # a dump written onto a UID-changeable card
    assert rig_tap(r, c) == codes.ACCEPTED
    r.model.remove()
    assert rig_tap(r, clone) == codes.USED
    assert r.meter.balance == 1_000_000


def test_clone_on_other_uid_is_foreign_or_forged():
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    clone = c.clone_to(b"\x99\x88\x77\x66")
    _rejected(r, clone, codes.FOREIGN)          # keys are diversified per UID
    # an attacker who extracted this meter's card secret re-keys the clone:
    # the records' MACs are bound to the UID, so they fail
    for s in R.SECTORS_USED:
        clone.blocks[s * 4 + 3] = bytearray(R.sector_trailer(ISSUER, clone.uid, s, "M000001"))
    _rejected(r, clone, codes.SIGNATURE)
    assert r.meter.balance == 0


def test_another_meters_card_does_not_open_and_wrong_region():
    r = fake_rig()
    c, _ = user_card(meter_id="M000002")
    _rejected(r, c, codes.FOREIGN)              # one card per meter: its keys are not ours
    c, _ = user_card(region=2)
    _rejected(r, c, codes.WRONG_REGION)
    assert r.meter.balance == 0


def test_blank_and_foreign_cards():
    r = fake_rig()
    _rejected(r, ClassicCard(b"\x01\x02\x03\x04"), codes.BLANK)
    c = ClassicCard(b"\x01\x02\x03\x05")
    c.blocks[7] = bytearray(b"\x12" * 6 + b"\xff\x07\x80\x69" + b"\x34" * 6)
    _rejected(r, c, codes.FOREIGN)
    c = ClassicCard(b"\x01\x02\x03\x06")
    c.sak = 0x20
    _rejected(r, c, codes.FOREIGN)


def test_corrupted_and_forged_records():
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    c.blocks[8][10] ^= 0x01                      # flip a ciphertext bit (amount)
    _rejected(r, c, codes.SIGNATURE)
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    c.blocks[5][0] ^= 0x01                       # header: account changed
    _rejected(r, c, codes.SIGNATURE)
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    c.blocks[4][0] = 0x00                        # bad magic
    _rejected(r, c, codes.FORMAT)
    r = fake_rig()
    c, h = user_card(amount=1_000_000, seq=1)
    for i in (4, 5):
        c.blocks[i] = bytearray(16)               # issued keys but no header
    _rejected(r, c, codes.BLANK)
    assert r.meter.balance == 0


def test_replayed_old_credit_is_rejected():
    r = fake_rig()
    c, h = user_card(amount=1000, seq=1)
    old = [bytes(c.blocks[8]), bytes(c.blocks[9])]
    assert rig_tap(r, c) == codes.ACCEPTED
    for s in range(2, 40):                        # many purchases later ...
        r.model.remove()
        load_credit(c, h, 1000, s)
        assert rig_tap(r, c) == codes.ACCEPTED
    c.blocks[8], c.blocks[9] = bytearray(old[0]), bytearray(old[1])  # replay seq 1
    r.model.remove()
    got = rig_tap(r, c)
    assert got in (codes.OLD, codes.USED)
    assert r.meter.balance == 39 * 1000


def test_key_revision_expired():
    r = fake_rig()
    c, h = user_card()
    i2 = testing_issuer(2)
    keys = MeterKeys({1: ISSUER.meter_key("M000001"), 2: i2.meter_key("M000001")}, 2,
                     allow_test=True)
    r.session = Session(r.rc, r.meter, keys, r.clock)
    _rejected(r, c, codes.KEY_EXPIRED)
    assert r.session.lockout.fails(c.uid) == 0      # a genuine old card is not a guess


def test_test_keys_refused_outside_test_build():
    i = ISSUER
    try:
        MeterKeys({1: i.meter_key("M1")}, meter_id="M1")
    except ValueError:
        pass
    else:
        raise AssertionError("test keys accepted")


def test_lockout_grows_and_expires_per_card():
    r = fake_rig()
    bad, _ = user_card(meter_id="M000009")               # another meter's: no key opens it
    good, _ = user_card(uid=b"\x21\x22\x23\x24", amount=500, seq=1)
    for _ in range(L.LOCK_AFTER):
        _rejected(r, bad, codes.FOREIGN)
    r.model.remove()
    assert rig_tap(r, bad) == codes.LOCKED_OUT
    r.model.remove()
    assert rig_tap(r, good) == codes.ACCEPTED             # another card does not wait
    r.clock.advance(L.LOCK_BASE_MS + 1)
    _rejected(r, bad, codes.FOREIGN)                     # 4th failure: 2x delay
    r.model.remove()
    r.clock.advance(L.LOCK_BASE_MS + 1)
    assert rig_tap(r, bad) == codes.LOCKED_OUT
    r.model.remove()
    r.clock.advance(L.LOCK_BASE_MS)
    _rejected(r, bad, codes.FOREIGN)
    assert r.session.lockout.fails(bad.uid) == L.LOCK_AFTER + 2
    assert r.session.lockout.fails(good.uid) == 0


def test_rf_trouble_does_not_count_towards_lockout():
    r = fake_rig()
    c, _ = user_card(amount=500, seq=1)
    for kind in ("crc", "parity", "drop", "collision", "protocol"):
        r.model.remove()
        r.model.place(c)
        r.model.inject_rf_error(kind, after=3)   # REQA, anticollision, SELECT pass
        got = r.session.poll()
        assert got in (codes.CRC, codes.TIMEOUT, codes.CARD_GONE), (kind, got)
    assert r.session.lockout.fails(c.uid) == 0
    assert r.meter.balance == 0
    r.model.remove()
    assert rig_tap(r, c) == codes.ACCEPTED


T = {"at": 0, "sc": 1000, "b": [[10_000, 300_000], [0, 500_000]]}


def test_tariff_card_is_office_signed():
    m, hw, s = meter_rig()
    c = signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=1, v=7), uid=b"\x61\x62\x63\x64")
    assert tap(hw, s, c) == codes.ACCEPTED
    m.poll()
    assert m.billing.tariff.version == 7 and m.billing.tariff.blocks[1][1] == 500_000
    hw.world.reader.remove()
    assert tap(hw, s, c) == codes.ACCEPTED           # tapped again: already in force
    hw.world.reader.remove()
    other = signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=3, v=8), uid=b"\x61\x62\x63\x65")
    assert tap(hw, s, other) == codes.WRONG_REGION
    hw.world.reader.remove()
    forged = signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=1, v=8), uid=b"\x61\x62\x63\x66",
                         d=0xC0FFEE)
    assert tap(hw, s, forged) == codes.SIGNATURE and m.staged is None
    hw.world.reader.remove()
    listed = signed_card(R.CARD_TARIFF, dict(T, k="tariff", m=["M000009", "M000001"], v=8),
                         uid=b"\x61\x62\x63\x67")
    assert tap(hw, s, listed) == codes.ACCEPTED


def _readings(c, slots):
    got = {}
    for sct in slots:
        raw = b"".join(bytes(c.blocks[sct * 4 + i]) for i in range(3))
        if raw[0] != R.MAGIC:
            continue
        mid = raw[8:16].rstrip(b"\x00").decode()
        st = R.unpack_status(raw, R.card_keys(ISSUER.meter_key(mid), c.uid)[1], c.uid)
        got[mid] = st.balance
    return got


def test_check_card_collects_several_meters():
    from card import signed_card as SC
    a_m, a_hw, a_s = meter_rig(meter_id="M000001")
    b_m, b_hw, b_s = meter_rig(meter_id="M000002")
    a_m.apply_credit("card", 1, 1, 111)
    b_m.apply_credit("card", 1, 1, 222)
    now = a_hw.clock.time()
    doc = {"k": "check", "r": 1, "n": 5, "x": now + 86400}
    c = signed_card(R.CARD_CHECK, doc)
    assert tap(a_hw, a_s, c) == codes.ACCEPTED
    assert tap(b_hw, b_s, c) == codes.ACCEPTED
    a_hw.world.reader.remove()
    a_m.apply_credit("card", 1, 2, 222)
    assert tap(a_hw, a_s, c) == codes.ACCEPTED        # same slot updated
    import json
    slots = SC.slots(len(json.dumps(doc)))
    assert _readings(c, slots) == {"M000001": 333, "M000002": 222}
    # expired, too long-lived, or older than a card the meter has seen: refused
    for d, code in (({"n": 6, "x": now - 1}, codes.OLD), ({"n": 6, "x": now + 40 * 86400}, codes.RANGE),
                    ({"n": 4, "x": now + 86400}, codes.OLD)):
        a_hw.world.reader.remove()
        bad = signed_card(R.CARD_CHECK, dict(d, k="check", r=1), uid=b"\x51\x52\x53\x55")
        assert tap(a_hw, a_s, bad) == code, (d, code)


def test_valve_test_card_and_install_card_dispatch():
    m, hw, s = meter_rig()
    m.apply_credit("card", 1, 1, 5_000_000)
    m.poll()
    moves = m.valve.actuations
    c = signed_card(R.CARD_VALVE, {"k": "valve", "m": ["M000001"], "n": 1,
                                   "x": hw.clock.time() + 3600})
    assert tap(hw, s, c) == codes.ACCEPTED
    for _ in range(60):
        hw.clock.advance(1000)
        m.poll()
    assert m.valve.actuations > moves
    hw.world.reader.remove()
    for_other = signed_card(R.CARD_VALVE, {"k": "valve", "m": ["M000002"], "n": 2,
                                           "x": hw.clock.time() + 3600}, uid=b"\x51\x52\x53\x56")
    assert tap(hw, s, for_other) == codes.WRONG_METER
    r = fake_rig()
    uid = b"\x71\x72\x73\x74"
    h = R.Header(R.CARD_INSTALL, 5, "M000001", 4242, 1, ISSUER.rev)
    key = R.card_keys(ISSUER.meter_key("M000001"), uid)[1]
    inst = ClassicCard(uid)
    apply_plan(inst, R.plan_issue(ISSUER, uid, h, R.pack_install(key, uid, R.Install(1, "M000001", 4242, 5, 17), 1)))
    assert rig_tap(r, inst) == codes.ACCEPTED
    assert r.meter.installs == [(4242, 5, 1, 17)]   # the card's sequence and floor go to the meter
    assert r.session.region == 5


def test_emergency_request_flag():
    r = fake_rig()
    c, h = user_card(amount=0, flags=R.F_EMERGENCY)
    assert rig_tap(r, c) == codes.ACCEPTED
    assert r.meter.emergencies == 1
    assert card_status(c, h)[0].verdict == R.NO_VERDICT     # no credit, so no word on one


def test_meter_cannot_write_issuer_sectors():
    # key A (what a meter holds) may read but not write the header/credit sectors
    from test_card_rig import Rig
    from card import mfrc522
    from mptest import raises
    r = Rig()
    c, h = user_card()
    r.model.place(c)
    for sector in (R.S_HEADER, R.S_PAYLOAD):
        r.rc.request(True)
        r.rc.select()
        r.rc.auth(sector * 4 + 3, ISSUER.key_a(c.uid, sector, "M000001"))
        raises(mfrc522.NAK, r.rc.write, sector * 4, bytes(16))
    r.rc.request(True)
    r.rc.select()
    r.rc.auth(R.S_STATUS_A * 4 + 3, ISSUER.key_a(c.uid, R.S_STATUS_A, "M000001"))
    r.rc.write(R.S_STATUS_A * 4, bytes(16))
    raises(mfrc522.NAK, r.rc.write, R.S_STATUS_A * 4 + 3, bytes(16))  # trailer: key B only


def test_result_codes_match_firmware_codes():
    for name in ("USED", "FORMAT", "RANGE", "OLD", "SIGNATURE", "WRONG_METER", "WRONG_REGION",
                 "KEY_EXPIRED", "UNKNOWN", "BLANK", "FOREIGN", "WRONG_ACCOUNT", "VOIDED"):
        assert getattr(R, name) == getattr(codes, name), name


def test_attach_from_board_hardware():
    from test_card_rig import meter_rig, user_card, tap
    import card
    from card.keys import testing_meter_keys
    m, hw, _ = meter_rig()
    s = card.attach(hw, m, testing_meter_keys(m.cfg["meter_id"]))
    assert s is not None and s.poll() is None
    c, h = user_card(amount=2000, seq=1, meter_id=m.cfg["meter_id"], region=m.cfg["region"])
    b0 = m.balance
    assert tap(hw, s, c) == codes.ACCEPTED
    assert m.balance == b0 + 2000
    hw.world.reader.remove()
    assert tap(hw, s, c) == codes.USED
    assert m.balance == b0 + 2000


def test_a_failing_meter_call_becomes_a_result_code():
    r = fake_rig()

    def boom(*a):
        raise ValueError("bug")
    r.meter.apply_credit = boom
    c, _ = user_card(amount=500, seq=1)
    assert rig_tap(r, c) == codes.UNKNOWN
    assert r.meter.events[-1] == (codes.EV_CARD_REJECTED, codes.UNKNOWN)


def test_rf_noise_on_the_first_answer_is_a_result_not_an_exception():
    r = fake_rig()
    c, _ = user_card()
    for kind in ("parity", "protocol"):
        r.model.inject_rf_error(kind)
        got = rig_tap(r, c)
        assert isinstance(got, int), (kind, got)      # a result code, the loop never sees a raise
        r.model.remove()


def test_lockout_survives_a_rebuild_and_forgets_after_a_quiet_day():
    from mptest import fresh_dir
    from storage.state import StateStore
    d = fresh_dir("lock")
    r = fake_rig()
    r.session = Session(r.rc, r.meter, r.session.keys, r.clock, lock_store=StateStore(d, "cardlock"))
    bad, _ = user_card(meter_id="M000009")
    for _ in range(L.LOCK_AFTER):
        _rejected(r, bad, codes.FOREIGN)
    r.clock.advance(L.LOCK_BASE_MS + 1)             # the lock ran out ...
    s2 = Session(r.rc, r.meter, r.session.keys, r.clock, lock_store=StateStore(d, "cardlock"))
    r.session = s2                                  # ... but a power cut re-arms it
    r.model.remove()
    assert rig_tap(r, bad) == codes.LOCKED_OUT
    assert s2.lockout.fails(bad.uid) == L.LOCK_AFTER
    r.clock.advance(L.FORGET_MS)
    r.model.remove()
    assert rig_tap(r, bad) == codes.FOREIGN         # a quiet day: counting starts again
    assert s2.lockout.fails(bad.uid) == 1
    with open(d + "/cardlock.0", "w") as f:         # a damaged file: count from zero, no crash
        f.write("junk")
    with open(d + "/cardlock.1", "w") as f:
        f.write("junk")
    s3 = Session(r.rc, r.meter, r.session.keys, r.clock, lock_store=StateStore(d, "cardlock"))
    assert s3.lockout.fails(bad.uid) == 0
