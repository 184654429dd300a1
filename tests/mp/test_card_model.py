# The MFRC522 model against a second, deliberately different way of driving
# the chip, as other datasheet-based drivers do: one register per SPI
# transfer, FIFO filled byte by byte, StartSend set by read-modify-write,
# CRC from the coprocessor (CalcCRC) or from TxCRCEn/RxCRCEn, 25 ms timer.
from test_card_rig import card, FF, UID7
from boards.unix.clock import SimClock
from boards.unix.spi import SimSPI
from boards.unix.pins import SimPin
from boards.unix.mfrc522_model import MFRC522Model
from boards.unix.mifare_card import ClassicCard, to_bits, from_bits


class Plain:
    def __init__(self):
        self.clock = SimClock()
        self.spi = SimSPI(1, 4_000_000, self.clock)
        self.cs = SimPin("cs", SimPin.OUT, value=1)
        self.m = MFRC522Model(self.clock)
        self.spi.attach(self.cs, self.m)
        self.wr(0x01, 0x0F)                   # SoftReset
        self.wr(0x2A, 0x80)                   # TAuto
        self.wr(0x2B, 0xA9)
        self.wr(0x2C, 0x03)                   # 1000 ticks of 25 us = 25 ms
        self.wr(0x2D, 0xE8)
        self.wr(0x15, 0x40)
        self.wr(0x11, 0x3D)
        self.wr(0x14, self.rd(0x14) | 0x03)

    def wr(self, a, v):
        self.cs.value(0)
        self.spi.write(bytes((a << 1, v)))
        self.cs.value(1)

    def rd(self, a):
        self.cs.value(0)
        r = bytearray(2)
        self.spi.write_readinto(bytes((0x80 | (a << 1), 0)), r)
        self.cs.value(1)
        return r[1]

    def calc_crc(self, data):
        self.wr(0x01, 0x00)
        self.wr(0x05, 0x04)
        self.wr(0x0A, 0x80)
        for b in data:
            self.wr(0x09, b)
        self.wr(0x01, 0x03)
        while not self.rd(0x05) & 0x04:
            pass
        self.wr(0x01, 0x00)
        return bytes((self.rd(0x22), self.rd(0x21)))

    def transceive(self, data, bits=0):
        self.wr(0x01, 0x00)
        self.wr(0x04, 0x7F)
        self.wr(0x0A, 0x80)
        for b in data:
            self.wr(0x09, b)
        self.wr(0x0D, bits)
        self.wr(0x01, 0x0C)
        self.wr(0x0D, self.rd(0x0D) | 0x80)
        while True:
            n = self.rd(0x04)
            if n & 0x30:
                break
            if n & 0x01:
                return None, 0
        self.wr(0x0D, self.rd(0x0D) & 0x7F)
        err = self.rd(0x06)
        n = self.rd(0x0A)
        out = bytes(self.rd(0x09) for _ in range(n))
        return out, err

    def auth(self, blk, key, uid4):
        self.wr(0x01, 0x00)
        self.wr(0x04, 0x7F)
        self.wr(0x0A, 0x80)
        for b in bytes((0x60, blk)) + key + uid4:
            self.wr(0x09, b)
        self.wr(0x01, 0x0E)
        while True:
            n = self.rd(0x04)
            if n & 0x10:
                break
            if n & 0x01:
                return False
        return bool(self.rd(0x08) & 0x08)


def _select_level(p, sel):
    cln, err = p.transceive(bytes((sel, 0x20)))
    assert err == 0 and len(cln) == 5
    frame = bytes((sel, 0x70)) + cln
    sak, err = p.transceive(frame + p.calc_crc(frame))
    assert err == 0 and len(sak) == 3 and p.calc_crc(sak[:1]) == sak[1:]
    return cln, sak[0]


def test_plain_driver_with_coprocessor_crc():
    p = Plain()
    c = card(b"\xde\xad\xbe\xef")
    c.blocks[4] = bytearray(b"plain-driver-ok!")
    p.m.place(c)
    atqa, err = p.transceive(b"\x26", 7)
    assert atqa == b"\x04\x00"
    cln, sak = _select_level(p, 0x93)
    assert cln[:4] == c.uid and sak == 0x08
    assert p.auth(7, FF, c.uid)
    data, err = p.transceive(b"\x30\x04" + p.calc_crc(b"\x30\x04"))
    assert err == 0 and data[:16] == b"plain-driver-ok!" and p.calc_crc(data[:16]) == data[16:]
    # no card: the chip's timer ends the wait
    p.m.remove()
    assert p.transceive(b"\x26", 7)[0] is None


def test_plain_driver_with_hardware_crc_and_7_byte_uid():
    p = Plain()
    c = ClassicCard(UID7)
    p.m.place(c)
    assert p.transceive(b"\x52", 7)[0] == b"\x44\x00"
    cl1, sak1 = _select_level(p, 0x93)
    assert cl1[0] == 0x88 and sak1 & 0x04
    cl2, sak2 = _select_level(p, 0x95)
    assert cl1[1:4] + cl2[:4] == UID7 and sak2 == 0x08
    assert p.auth(4, FF, UID7[3:7])
    p.wr(0x12, 0x80)                          # TxCRCEn
    p.wr(0x13, 0x80)                          # RxCRCEn: the chip strips the CRC
    data, err = p.transceive(b"\x30\x04")
    assert err == 0 and data == bytes(16)
    p.m.inject_rf_error("crc")
    data, err = p.transceive(b"\x30\x04")
    assert err & 0x04                         # ErrorReg.CRCErr
    # the 7-byte card refuses authentication with the first 4 UID bytes
    p.wr(0x12, 0x00)
    p.wr(0x13, 0x00)
    p.wr(0x08, 0x00)                          # StopCrypto1: only the reader's end stops,
    assert c.state == 2 and c.crypto is not None   # nothing went on air
    assert p.transceive(b"\x52", 7)[0] is None    # the card hears noise, drops to IDLE ...
    assert p.transceive(b"\x52", 7)[0] == b"\x44\x00"   # ... and answers the next WUPA
    _select_level(p, 0x93)
    _select_level(p, 0x95)
    assert not p.auth(4, FF, UID7[0:4])


def test_version_and_fifo_level():
    p = Plain()
    assert p.rd(0x37) == 0x92
    for b in range(5):
        p.wr(0x09, b)
    assert p.rd(0x0A) == 5
    p.wr(0x0A, 0x80)
    assert p.rd(0x0A) == 0


def _auth_4k(p):
    c = card(b"\xde\xad\xbe\xef")
    c.blocks[4] = bytearray(b"secret-on-card!!")
    p.m.place(c)
    p.transceive(b"\x26", 7)
    _select_level(p, 0x93)
    assert p.auth(7, FF, c.uid)
    return c


def test_frames_are_encrypted_while_mfcrypto1on_is_set():
    p = Plain()
    c = _auth_4k(p)
    heard = []
    real = c.rf

    def spy(bits):
        heard.append(list(bits))
        out = real(bits)
        if out is not None:
            heard.append(list(out[0]))
        return out
    c.rf = spy
    read = b"\x30\x04" + p.calc_crc(b"\x30\x04")
    data, err = p.transceive(read)
    assert err == 0 and data[:16] == b"secret-on-card!!"      # decrypted by the reader
    assert heard[0] != to_bits(read)                            # on air: not the command
    assert from_bits(heard[1])[:16] != b"secret-on-card!!"     # nor the data
    assert c.crypto.pos == p.m._crypto.pos                      # both ends in step


def test_a_clear_text_exchange_with_an_authenticated_card_fails():
    p = Plain()
    c = _auth_4k(p)
    p.wr(0x08, 0x00)                          # MFCrypto1On cleared, card still authenticated
    data, err = p.transceive(b"\x30\x04" + p.calc_crc(b"\x30\x04"))
    assert data is None or data[:16] != b"secret-on-card!!"
    assert c.state != 2 and c.crypto is None  # it heard noise and left the session


def test_hard_power_down_resets_registers_stops_rf_and_takes_its_start_up_time():
    from boards.unix.mfrc522_model import STARTUP_US, T_D_US
    p = Plain()
    rst = SimPin("rst", SimPin.OUT, value=1)
    p.m.attach_rst(rst)
    c = _auth_4k(p)
    p.wr(0x2B, 0x55)                          # a register away from its reset value
    rst.value(0)                              # NRSTPD low: hard power-down
    assert c.state == 0 and c.crypto is None  # no field: the card lost power
    assert p.rd(0x37) == 0                    # SPI not served
    p.clock.advance_us(1000)
    rst.value(1)                              # rising edge: hard reset, oscillator starts
    assert p.rd(0x37) == 0
    p.clock.advance_us(STARTUP_US + T_D_US)
    assert p.rd(0x37) == 0x92 and p.rd(0x2B) == 0x00 and p.rd(0x14) == 0x80
    assert p.rd(0x08) & 0x08 == 0             # MFCrypto1On cleared by the reset


def _reqa_answered(p, wait_us=2000):
    """REQA by hand with a bounded wait: True when RxIRq came (ATQA)."""
    p.wr(0x01, 0x00)
    p.wr(0x04, 0x7F)
    p.wr(0x0A, 0x80)
    p.wr(0x09, 0x26)
    p.wr(0x01, 0x0C)
    p.wr(0x0D, 0x87)                          # StartSend, 7 bits
    p.clock.advance_us(wait_us)
    return bool(p.rd(0x04) & 0x20)


def test_soft_power_down_keeps_registers_stops_rf_and_loses_commands_until_awake():
    from boards.unix.mfrc522_model import STARTUP_US, SOFT_WAKE_US
    p = Plain()
    c = _auth_4k(p)
    p.wr(0x2B, 0x55)                          # a register away from its reset value
    p.wr(0x0A, 0x80)
    p.wr(0x09, 0xA5)                          # one byte left in the FIFO
    p.wr(0x01, 0x10)                          # PowerDown: soft power-down (8.6.2)
    assert c.state == 0 and c.crypto is None  # the field went: the card lost power
    assert p.m.power_state() == "soft"
    assert p.rd(0x01) & 0x10                  # SPI still served, PowerDown reads 1
    assert p.rd(0x2B) == 0x55 and p.rd(0x0A) == 1   # registers and FIFO kept
    assert p.rd(0x08) & 0x08 == 0             # the Crypto1 session ended with the field
    # a driver that starts a REQA without waking the chip: the Transceive
    # write clears PowerDown (its bit 4 is 0) and starts the wake-up, but
    # there is no clock yet, so the command is lost and no card answers
    assert not _reqa_answered(p)
    assert p.rd(0x01) & 0x0F == 0             # CommandReg kept Idle: Transceive lost
    # waking: PowerDown reads 1 until oscillator start-up + 1024 clocks
    p.m.place(c)
    p.wr(0x01, 0x10)
    p.wr(0x01, 0x00)                          # clear PowerDown: the wake-up starts
    p.clock.advance_us(STARTUP_US + SOFT_WAKE_US - 10)
    assert p.rd(0x01) & 0x10
    p.clock.advance_us(10)
    assert p.rd(0x01) & 0x10 == 0 and p.m.power_state() == "on"
    assert p.rd(0x2B) == 0x55 and p.rd(0x14) & 0x03 == 0x03   # set-up kept: no re-init
    assert _reqa_answered(p)                  # the field is back with the clock


def test_power_state_time_is_counted_for_the_budget():
    from boards.unix.mfrc522_model import STARTUP_US, SOFT_WAKE_US
    p = Plain()
    a0, f0, _ = p.m.usage()
    p.clock.advance_us(1000)                  # awake, field on
    p.wr(0x01, 0x10)
    p.clock.advance_us(50_000)                # soft power-down: counts nothing
    p.wr(0x01, 0x00)
    p.clock.advance_us(STARTUP_US + SOFT_WAKE_US + 500)
    a, f, _ = p.m.usage()
    assert 1500 <= a - a0 <= 1520, a - a0     # 1 ms before, 0.5 ms after, SPI time aside
    assert f - f0 == a - a0
