# Wire formats and signatures of the MQTT protocol (firmware/comms/codec.py, sign.py).
from binascii import hexlify

from mptest import raises
from comms import codec
from comms.sign import hmac_sha256, meter_key, mqtt_password, equal


def test_hmac_sha256_matches_rfc4231():
    # RFC 4231 test cases 2 and 6 (short key; key longer than the block)
    got = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert hexlify(got) == b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    got = hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert hexlify(got) == b"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_keys_are_diversified():
    master = bytes(range(32))
    assert meter_key(master, "M1") != meter_key(master, "M2")
    assert meter_key(master, "1") != mqtt_password(master, "1")
    assert len(mqtt_password(master, "M1")) == 32
    assert equal(b"abc", b"abc") and not equal(b"abc", b"abd") and not equal(b"ab", b"abc")


def test_telemetry_record_round_trip_and_size():
    fl = codec.flags(True, 2, 3, confirm=True, staged=True)
    r = codec.tele(1767225600, 123_456_789_012, -4_500, 600_000, fl, 7, 99, -61)
    codec.set_seq(r, 4242)
    assert len(r) == 40
    d, n = codec.decode_record(r)
    assert n == 40
    assert (d["seq"], d["t"], d["ml"], d["bal"], d["flow"], d["tv"], d["evs"], d["rssi"]) == (
        4242, 1767225600, 123_456_789_012, -4_500, 600_000, 7, 99, -61)
    assert (d["valve"], d["why"], d["low"]) == (1, 2, 3)
    assert d["flags"] & codec.F_CONFIRM and d["flags"] & codec.F_STAGED
    assert codec.decode_record(codec.tele(0, 0, 0, 0, 0, 0, 0, None))[0]["rssi"] is None


def test_batch_of_mixed_records_round_trips():
    t = codec.tele(10, 1, 2, 3, 0, 1, 5, -50)
    codec.set_seq(t, 1)
    e = codec.event(5, 11, 24, -7)
    codec.set_seq(e, 2)
    s = codec.summary(3, 9, 6, 12, 20, 100, 200, -1, 2)
    recs = codec.unbatch(codec.seal_up(b"k" * 32, "m/M1/t", codec.batch([t, e, s])))
    assert [r["kind"] for r in recs] == [codec.TELE, codec.EVENT, codec.SUMMARY]
    assert recs[1]["code"] == 24 and recs[1]["arg"] == -7 and recs[1]["evs"] == 5
    assert (recs[2]["seq"], recs[2]["last"], recs[2]["n"], recs[2]["ml1"], recs[2]["dropped"]) == (3, 9, 6, 200, 2)


def test_malformed_batches_are_refused():
    t = codec.tele(10, 1, 2, 3, 0, 1, 5, -50)
    good = codec.batch([t])
    raises(ValueError, codec.unbatch, b"")
    raises(ValueError, codec.unbatch, b"\x01" + good[1:], False)   # version 1: untagged
    raises(ValueError, codec.unbatch, good[:-1], False)             # truncated
    raises(ValueError, codec.unbatch, good + b"\x09", False)       # unknown kind
    raises(ValueError, codec.unbatch, good[:10])                   # shorter than a tag


def test_uplink_tag_binds_key_topic_and_body():
    key = b"u" * 32
    body = codec.batch([codec.tele(10, 1, 2, 3, 0, 1, 5, -50)])
    p = codec.seal_up(key, "m/M1/t", body)
    assert len(p) == len(body) + codec.UP_TAG
    assert codec.verify_up(key, "m/M1/t", p) and codec.verify_up(key, b"m/M1/t", p)
    assert not codec.verify_up(b"x" * 32, "m/M1/t", p)          # another meter's key
    assert not codec.verify_up(key, "m/M1/e", p)                # moved to the event topic
    assert not codec.verify_up(key, "m/M2/t", p)                # moved to another meter
    bad = bytearray(p)
    bad[5] ^= 1
    assert not codec.verify_up(key, "m/M1/t", bytes(bad))      # one bit of the body
    assert not codec.verify_up(key, "m/M1/t", body)             # no tag at all
    assert not codec.verify_up(key, "m/M1/t", b"")
    from comms import sign
    mk = b"m" * 32
    assert sign.uplink_key(mk) != mk and sign.uplink_key(mk) != sign.uplink_key(b"n" * 32)


def test_ack_round_trip():
    a = codec.parse_ack(codec.ack(77, 1, 5_000_000, None, b"cmd"), False)
    assert (a["n"], a["code"], a["val"], a["detail"]) == (77, 1, 5_000_000, None)
    assert a["h"] == codec.command_hash(b"cmd") != codec.command_hash(b"cmd2")
    a = codec.parse_ack(codec.seal_up(b"k", "m/M1/a", codec.ack(3, 0, 0, {"bal": 12})))
    assert a["detail"] == {"bal": 12}
    assert len(codec.ack(1, 0)) == 22


def test_seal_and_unseal():
    key = b"k" * 32
    body = codec.command(5, "topup", a=1, s=2, v=300)
    p = codec.seal(key, "m/M1/c", body)
    assert codec.unseal(key, "m/M1/c", p) == (0, body)
    assert codec.unseal(key, b"m/M1/c", p) == (0, body)      # bytes topic, as umqtt gives
    assert codec.unseal(b"x" * 32, "m/M1/c", p)[0] == 5       # wrong key
    assert codec.unseal(key, "m/M2/c", p)[0] == 5             # replayed to another meter
    forged = p.replace(b'"v":300', b'"v":900')
    assert codec.unseal(key, "m/M1/c", forged)[0] == 5        # body changed
    assert codec.unseal(None, "m/M1/c", p)[0] == 5            # no key provisioned
    assert codec.unseal(key, "m/M1/c", body)[0] == 2          # unsigned
    assert codec.unseal(key, "m/M1/c", b"{" + b" " * 2000 + p)[0] == 2  # oversized
    assert codec.unseal(key, "m/M1/c", p[:-65] + b"#" + p[-64:])[0] == 2


def test_describe_never_raises():
    t = codec.tele(10, 1, 2, 3, 0, 1, 5, -50)
    assert codec.describe(b"m/M1/t", codec.seal_up(b"k", "m/M1/t", codec.batch([t]))).startswith("T#0")
    assert codec.describe(b"m/M1/t", b"\xff\x00garbage") == "9 bytes"
    assert "ack" in codec.describe("m/M1/a", codec.seal_up(b"k", "m/M1/a", codec.ack(1, 0)))
