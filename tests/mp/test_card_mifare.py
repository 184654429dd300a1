# MIFARE Classic rules: access bits, trailers, key B, value blocks, 4K sectors.
from mptest import raises
from test_card_rig import Rig, card, FF
from boards.unix.mifare_card import ClassicCard
from card import mfrc522
from card.mifare import (Classic, access_bytes, access_conditions, trailer, value_encode,
                         value_decode, trailer_block, sector_of)

KB = b"\xb0\xb1\xb2\xb3\xb4\xb5"
KA = b"\xa0\xa1\xa2\xa3\xa4\xa5"


def _classic(c):
    r = Rig()
    r.model.place(c)
    cl = Classic(r.rc)
    assert cl.connect() == c.uid
    return r, cl


def test_access_bits_roundtrip_and_factory():
    assert access_bytes(0, 0, 0, 1) == b"\xff\x07\x80"
    for a in range(8):
        for t in range(8):
            assert access_conditions(access_bytes(a, (a + 1) % 8, (a + 5) % 8, t)) == \
                (a, (a + 1) % 8, (a + 5) % 8, t)
    assert access_conditions(b"\xff\x07\x00") is None
    raises(ValueError, trailer, FF, b"\x00\x00\x00", FF)


def test_geometry_1k_4k():
    assert trailer_block(0) == 3 and trailer_block(15) == 63
    assert trailer_block(31) == 127 and trailer_block(32) == 143 and trailer_block(39) == 255
    assert sector_of(128) == 32 and sector_of(255) == 39 and sector_of(127) == 31


def test_value_helpers():
    b = value_encode(-5, 9)
    assert value_decode(b) == (-5, 9)
    assert value_decode(b[:4] + b"\x00" * 12) is None


def test_classic_refuses_malformed_trailer_and_block0():
    r, cl = _classic(card())
    cl.auth(1, FF)
    raises(ValueError, cl.write, 7, FF + b"\x00\x00\x00\x00" + FF)
    raises(ValueError, cl.write, 0, bytes(16))


def test_malformed_trailer_blocks_the_sector_for_good():
    c = card()
    r, cl = _classic(c)
    cl.auth(1, FF)
    r.rc.write(7, FF + b"\x12\x34\x56\x69" + FF)   # raw driver: no guard
    assert c.blocked(1)
    assert cl.connect()
    raises(mfrc522.AuthFailed, cl.auth, 1, FF)
    assert cl.connect()
    cl.auth(2, FF)                                  # other sectors are fine


def test_key_b_rights_and_key_a_read_only():
    c = card()
    r, cl = _classic(c)
    cl.auth(1, FF)
    cl.write(4, b"x" * 16)
    # data blocks: read A|B, write B (cond 100); trailer 011
    cl.write(7, trailer(KA, access_bytes(4, 4, 4, 3), KB))
    cl.connect()
    cl.auth(1, KA)
    assert bytes(cl.read(4)) == b"x" * 16
    t = bytes(cl.read(7))
    assert t[0:6] == bytes(6) and t[6:9] == access_bytes(4, 4, 4, 3) and t[10:16] == bytes(6)
    raises(mfrc522.NAK, cl.write, 4, b"y" * 16)
    cl.connect()
    cl.auth(1, KB, True)
    cl.write(4, b"y" * 16)
    assert bytes(c.blocks[4]) == b"y" * 16
    raises(mfrc522.AuthFailed, cl.auth, 2, KB, True)


def test_readable_key_b_opens_nothing():
    c = card()
    r, cl = _classic(c)
    cl.auth(1, FF)
    cl.write(7, trailer(KA, access_bytes(0, 0, 0, 1), KB))  # transport: key B readable
    cl.connect()
    cl.auth(1, KB, True)                            # auth succeeds ...
    raises(mfrc522.NAK, cl.read, 4)                 # ... but nothing is allowed


def test_value_block_rights():
    c = card()
    r, cl = _classic(c)
    cl.auth(2, FF)
    cl.write_value(8, 50)
    cl.write_value(9, 0)
    # block 8: 110 (inc with B, dec with A|B); block 9: 001 (dec only)
    cl.write(11, trailer(KA, access_bytes(6, 1, 0, 3), KB))
    cl.connect()
    cl.auth(2, KA)
    cl.decrement(8, 20)
    assert cl.read_value(8) == 30
    raises(mfrc522.NAK, cl.increment, 8, 1)        # increment needs key B
    cl.connect()
    cl.auth(2, KB, True)
    cl.increment(8, 5)
    assert cl.read_value(8) == 35
    cl.copy_value(8, 9)                             # restore + transfer (dec right on 9)
    assert cl.read_value(9) == 35
    raises(mfrc522.NAK, cl.write, 9, bytes(16))     # 001: no write


def test_4k_big_sector_groups():
    c = ClassicCard(b"\x31\x32\x33\x34", 4096)
    r, cl = _classic(c)
    cl.auth(33, FF)                                 # blocks 144..159
    cl.write(159, trailer(KA, access_bytes(0, 2, 0, 1), FF))  # blocks 149-153 read-only
    cl.connect()
    cl.auth(33, KA)
    cl.write(148, b"a" * 16)
    raises(mfrc522.NAK, cl.write, 149, b"b" * 16)
    cl.connect()
    cl.auth(33, KA)
    cl.write(154, b"c" * 16)


def test_card_image_roundtrip():
    c = ClassicCard(b"\x04\x01\x02\x03\x04\x05\x06", 4096)
    c.blocks[5] = bytearray(b"z" * 16)
    d = ClassicCard.from_dict(c.to_dict())
    assert d.uid == c.uid and d.size == 4096 and bytes(d.blocks[5]) == b"z" * 16
    assert d.atqa == b"\x42\x00" and d.sak == 0x18
