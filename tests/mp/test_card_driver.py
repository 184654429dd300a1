# The MFRC522 driver against the register-level model and the card model.
from mptest import raises
from test_card_rig import Rig, card, UID7, FF
from boards.unix.spi import SimSPI
from boards.unix.pins import SimPin
from boards.unix.clock import SimClock
from boards.unix.mifare_card import ClassicCard, value_block
from card import mfrc522
from card.mfrc522 import MFRC522


def _ready(r, c):
    r.model.place(c)
    assert r.rc.request()
    r.rc.select()


def test_no_chip_is_a_clear_error():
    clock = SimClock()
    spi = SimSPI(1, 4_000_000, clock)
    cs = SimPin("card_cs", SimPin.OUT, value=1)
    e = raises(mfrc522.NoChip, MFRC522, spi, cs, None, clock)
    assert "VersionReg=0xff" in str(e)


def test_init_configures_timer_and_antenna():
    r = Rig()
    m = r.model
    assert m.reg[0x2A] & 0x80           # TAuto
    assert m.reg[0x14] & 0x03 == 0x03   # antenna on
    assert m.reg[0x15] & 0x40           # 100 % ASK
    assert r.rc.version == 0x92


def test_poll_no_card_is_a_handful_of_transfers():
    r = Rig()
    r.rc.request()  # first poll also loads the timer reload
    m = r.mark()
    assert r.rc.request() == 0
    t, nbytes, us = r.since(m)
    assert t <= 10, t
    assert nbytes <= 30, nbytes
    assert us < 1000, us
    assert r.rc.polls <= 3


class _FakeSPI:
    """Answers like a chip whose timer has fired; allocates nothing."""
    def write(self, buf):
        pass

    def write_readinto(self, w, r):
        v = 0x92 if w[0] == 0x80 | (0x37 << 1) else 0x01
        for i in range(len(r)):
            r[i] = v


class _Pin:
    def value(self, v=None):
        return 1


class _Clock:
    def delay_us(self, us):
        pass


def _poll_locked(rc, n):
    import micropython
    micropython.heap_lock()
    try:
        for _ in range(n):
            rc.request()
    finally:
        micropython.heap_unlock()


def test_no_card_poll_allocates_nothing():
    rc = MFRC522(_FakeSPI(), _Pin(), None, _Clock())
    rc.request()
    _poll_locked(rc, 10)


def test_select_4_byte_uid_1k():
    r = Rig()
    c = card(b"\x01\x02\x03\x04")
    r.model.place(c)
    assert r.rc.request() == 0x0004
    assert r.rc.select() == 4
    assert bytes(r.rc.uid[:4]) == b"\x01\x02\x03\x04"
    assert r.rc.sak == 0x08 and not r.rc.is_4k()


def test_select_7_byte_uid_4k_and_auth_uses_cl2_bytes():
    r = Rig()
    c = ClassicCard(UID7, 4096)
    _ready(r, c)
    assert r.rc.uid_len == 7 and bytes(r.rc.uid[:7]) == UID7
    assert r.rc.sak == 0x18 and r.rc.is_4k()
    r.rc.auth(4, FF)        # MFAuthent gets uid[3:7]
    b = bytearray(16)
    r.rc.read(4, b)
    r.rc.auth(255, FF)      # last trailer of a 16-block sector
    r.rc.read(250, b)


def test_unsupported_card_refused_with_reason():
    r = Rig()
    c = card()
    c.sak = 0x20            # ISO 14443-4 card (DESFire-like)
    r.model.place(c)
    r.rc.request()
    e = raises(mfrc522.Unsupported, r.rc.select)
    assert e.sak == 0x20


def test_read_write_roundtrip_and_wrong_key():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(5, FF)
    r.rc.write(5, b"0123456789abcdef")
    b = bytearray(16)
    assert bytes(r.rc.read(5, b)) == b"0123456789abcdef"
    assert bytes(c.blocks[5]) == b"0123456789abcdef"
    raises(mfrc522.AuthFailed, r.rc.auth, 8, b"\x00" * 6)
    # the card dropped to IDLE: it must be woken and selected again
    raises(mfrc522.Timeout, r.rc.read, 5, b)
    assert r.rc.request()
    r.rc.select()
    r.rc.auth(8, FF)
    r.rc.read(8, b)


def test_access_outside_authenticated_sector_is_nak():
    r = Rig()
    _ready(r, card())
    r.rc.auth(4, FF)
    b = bytearray(16)
    e = raises(mfrc522.NAK, r.rc.read, 8, b)
    assert e.nak == 0x4


def test_block0_is_read_only():
    r = Rig()
    _ready(r, card())
    r.rc.auth(0, FF)
    raises(mfrc522.NAK, r.rc.write, 0, bytes(16))


def test_rf_errors_are_specific():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(4, FF)
    b = bytearray(16)
    r.model.inject_rf_error("crc")
    raises(mfrc522.CRCError, r.rc.read, 4, b)
    r.model.inject_rf_error("parity")
    raises(mfrc522.CRCError, r.rc.read, 4, b)
    r.model.inject_rf_error("collision")
    raises(mfrc522.Collision, r.rc.read, 4, b)
    r.model.inject_rf_error("drop")
    raises(mfrc522.CardGone, r.rc.read, 4, b)


def test_card_pulled_between_transfers_is_card_gone():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(4, FF)
    r.spi.on_transfer = lambda n: r.model.remove()
    b = bytearray(16)
    e = raises(mfrc522.CardGone, r.rc.read, 4, b)
    assert e.code == 16
    r.spi.on_transfer = None
    assert r.rc.request() == 0


def test_torn_write_leaves_undetermined_data():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(4, FF)
    r.rc.write(4, b"A" * 16)
    f0 = r.model.frames
    # pull the card during the second half of the next write (right after the
    # data frame is sent, before the ACK is in: the EEPROM write is under way)
    def pull(n):
        if r.model.frames == f0 + 2 and r.model.cards:
            r.model.remove()
    r.spi.on_transfer = pull
    raises(mfrc522.CardGone, r.rc.write, 4, b"B" * 16)
    blk = bytes(c.blocks[4])
    assert blk != b"A" * 16 and blk != b"B" * 16, blk


def test_halt_and_wake():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(4, FF)
    r.rc.halt()
    assert r.rc.request() == 0          # REQA does not wake a halted card
    assert r.rc.request(wake=True) == 0x0004
    r.rc.select()
    r.rc.auth(4, FF)


def test_anticollision_two_cards():
    r = Rig()
    a = card(b"\x10\x20\x30\x40")
    b = card(b"\x10\x20\x31\x40")       # differ in bit 16
    r.model.place(a)
    r.model.place(b)
    assert r.rc.request()
    r.rc.select()
    first = bytes(r.rc.uid[:4])
    assert first in (a.uid, b.uid)
    r.rc.halt()
    assert r.rc.request()
    r.rc.select()
    second = bytes(r.rc.uid[:4])
    assert {first, second} == {a.uid, b.uid}


def test_anticollision_7_byte_and_4_byte():
    r = Rig()
    a = ClassicCard(UID7)
    b = card(b"\x88\x99\xaa\xbb")
    r.model.place(a)
    r.model.place(b)
    got = []
    for _ in range(2):
        assert r.rc.request()
        n = r.rc.select()
        got.append(bytes(r.rc.uid[:n]))
        r.rc.halt()
    assert sorted(got) == sorted([a.uid, b.uid])


def test_value_block_operations():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.auth(6, FF)
    r.rc.write(6, value_block(100, 6))
    r.rc.increment(6, 25)
    r.rc.transfer(6)
    r.rc.decrement(6, 5)
    r.rc.transfer(5)                     # to another block of the sector
    b = bytearray(16)
    assert bytes(r.rc.read(6, b)) == value_block(125, 6)
    assert bytes(r.rc.read(5, b))[:12] == value_block(120, 5)[:12]
    r.rc.restore(6)
    r.rc.transfer(4)
    assert bytes(r.rc.read(4, b))[:12] == value_block(125, 4)[:12]
    # a plain data block is no value block: NAK on the first step
    r.rc.write(4, bytes(16))
    raises(mfrc522.NAK, r.rc.increment, 4, 1)


def test_crc_coprocessor_matches_software():
    r = Rig()
    for data in (b"\x50\x00", b"\x93\x70\x11\x22\x33\x44\x44", bytes(range(16))):
        assert r.rc.calc_crc(data) == mfrc522.crc_a(data, len(data))
    assert r.rc.calc_crc(b"\x50\x00") == 0xCD57


def test_soft_reset_turns_the_field_off():
    r = Rig()
    c = card()
    _ready(r, c)
    r.rc.init()                          # soft reset + set-up again
    assert r.rc.request() == 0x0004      # card was reset to IDLE by the field drop


def test_a_poll_without_wake_after_soft_power_down_misses_the_card():
    r = Rig()
    c = card()
    r.rc.power_down()
    r.model.place(c)
    assert r.model.power_state() == "soft"
    assert r.rc.request() == 0           # forgot wake(): no clock, no field, no answer
    r.rc.power_down()
    r.rc.wake()
    assert r.model.power_state() == "on"
    assert r.rc.request() == 0x0004      # woken: the card answers, no init needed
    assert r.rc.select() == 4


def test_wake_waits_for_the_oscillator_and_the_1024_clocks():
    from boards.unix.mfrc522_model import STARTUP_US, SOFT_WAKE_US
    r = Rig()
    r.rc.power_down()
    t0 = r.clock.now_us()
    assert r.rc.wake() > 0               # PowerDown read back as 1 at least once
    took = r.clock.now_us() - t0
    assert STARTUP_US + SOFT_WAKE_US <= took < STARTUP_US + SOFT_WAKE_US + 100, took


def test_hard_power_down_needs_init_and_costs_more_than_a_soft_wake():
    r = Rig()
    rst = SimPin("card_rst", SimPin.OUT, value=1)
    r.model.attach_rst(rst)
    rc = MFRC522(r.spi, r.cs, rst, r.clock)
    c = card()
    r.model.place(c)
    rc.hard_power_down()
    assert r.model.power_state() == "hard" and rc.request() == 0
    w = r.model.reg_writes
    rc.init()                            # hard reset, oscillator, set-up again
    init_writes = r.model.reg_writes - w
    assert rc.request() == 0x0004
    rc.power_down()
    w = r.model.reg_writes
    rc.wake()
    assert r.model.reg_writes - w == 1   # a soft wake keeps the set-up: one write
    assert init_writes >= 10
