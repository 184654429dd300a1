# MFRC522 driver, written for this project from the NXP MFRC522 datasheet
# (rev. 3.9) and ISO/IEC 14443-3 type A.
#
# - Hardware is injected: an SPI object with the machine.SPI surface (mode 0,
#   MSB first, <= 10 MHz), a CS pin and an optional RST (NRSTPD) pin, anything
#   with .value(v); a clock with delay_us()/delay_ms() (the board clock).
# - Buffers are allocated once; the polling loop allocates nothing.
# - Time-outs come from the chip's own timer (TAuto: it starts at the end of
#   each transmission and stops when a response starts), so waiting for a card
#   that is not there costs one timer period and a few status reads: the host
#   first sleeps through the frame's expected air time, then polls.
# - CRC_A is computed and checked in software (cheaper than two round trips to
#   the CRC coprocessor per frame); calc_crc() exercises the coprocessor.
# - Several status registers are read in one SPI transfer (the chip accepts a
#   list of read addresses while CS stays low).
from micropython import const

# registers (datasheet section 9.2)
_CommandReg = const(0x01)
_ComIrqReg = const(0x04)
_DivIrqReg = const(0x05)
_ErrorReg = const(0x06)
_Status2Reg = const(0x08)
_FIFODataReg = const(0x09)
_FIFOLevelReg = const(0x0A)
_ControlReg = const(0x0C)
_BitFramingReg = const(0x0D)
_CollReg = const(0x0E)
_ModeReg = const(0x11)
_TxModeReg = const(0x12)
_RxModeReg = const(0x13)
_TxControlReg = const(0x14)
_TxASKReg = const(0x15)
_CRCResultRegH = const(0x21)
_CRCResultRegL = const(0x22)
_TModeReg = const(0x2A)
_TPrescalerReg = const(0x2B)
_TReloadRegH = const(0x2C)
_TReloadRegL = const(0x2D)
_VersionReg = const(0x37)

# commands (section 10.3)
_IDLE = const(0x00)
_CALC_CRC = const(0x03)
_TRANSCEIVE = const(0x0C)
_MF_AUTHENT = const(0x0E)
_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)     # CommandReg bit 4 (9.3.1.2)

# ComIrqReg bits
_RX_IRQ = const(0x20)
_IDLE_IRQ = const(0x10)
_ERR_IRQ = const(0x02)
_TIMER_IRQ = const(0x01)
# ErrorReg bits
_BUFFER_OVFL = const(0x10)
_COLL_ERR = const(0x08)
_CRC_ERR = const(0x04)
_PARITY_ERR = const(0x02)
_PROTOCOL_ERR = const(0x01)

# timer: TPrescaler = 169 -> 13.56 MHz / 339 = 40 kHz, 25 us per tick
_PRESCALER = const(169)
_TICK_US = const(25)

# ISO 14443-3 / MIFARE Classic commands
_REQA = const(0x26)
_WUPA = const(0x52)
_SEL = (0x93, 0x95, 0x97)
_ACK = const(0x0A)

# time-outs (us) for the card's answer, from the MF1S50 time-out table
T_SHORT = const(300)      # REQA, anticollision, SELECT (FDT ~86 us)
T_AUTH = const(1000)      # each of the two authentication steps
T_READ = const(5000)
T_WRITE1 = const(5000)
T_WRITE2 = const(10000)
T_TRANSFER = const(10000)
T_HALT = const(1000)

VERSIONS = (0x91, 0x92, 0x88, 0xB2)  # MFRC522 v1.0, v2.0, FM17522 and a common clone


class CardError(Exception):
    code = 13  # codes.UNKNOWN


class NoChip(CardError):
    pass


class Timeout(CardError):
    code = 15  # codes.TIMEOUT


class CardGone(Timeout):
    """A selected card stopped answering (it left the field)."""
    code = 16  # codes.CARD_GONE


class CRCError(CardError):
    """CRC_A or parity error on a received frame."""
    code = 14  # codes.CRC


class Collision(CardError):
    code = 14


class NAK(CardError):
    code = 17  # codes.AUTH: a NAK after authentication means access denied

    def __init__(self, nak):
        super().__init__("NAK 0x%x" % nak)
        self.nak = nak


class AuthFailed(CardError):
    code = 17  # codes.AUTH


class Unsupported(CardError):
    """The card answered but is not a MIFARE Classic 1K/4K (SAK in .sak)."""
    code = 19  # codes.FOREIGN

    def __init__(self, sak):
        super().__init__("SAK 0x%02x is not MIFARE Classic 1K/4K" % sak)
        self.sak = sak


def crc_a(buf, n):
    crc = 0x6363
    for i in range(n):
        b = (buf[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return crc


class _SleepClock:
    def __init__(self):
        import time
        self._t = time

    def delay_us(self, us):
        self._t.sleep_us(us)


def _air_us(nbytes):
    # 9 bits per byte at 9.44 us, plus start/end of frame
    return (nbytes * 9 + 2) * 944 // 100


class MFRC522:
    def __init__(self, spi, cs, rst=None, clock=None):
        self.spi = spi
        self.cs = cs
        self.rst = rst
        self.clock = clock if clock is not None else _SleepClock()
        self._w2 = bytearray(2)
        self._r2 = bytearray(2)
        self._ws = bytearray((0x80 | (_ComIrqReg << 1), 0x80 | (_ErrorReg << 1),
                              0x80 | (_FIFOLevelReg << 1), 0x80 | (_ControlReg << 1),
                              0x80 | (_Status2Reg << 1), 0))
        self._rs = bytearray(6)
        self._fw = bytearray(1 + 20)  # FIFO write burst: address + data
        self._fw[0] = _FIFODataReg << 1
        self._fr_w = bytearray(b"\x92" * 20 + b"\x00")  # FIFO read burst addresses
        self._fr = bytearray(21)
        fr, fw, frw = memoryview(self._fr), memoryview(self._fw), memoryview(self._fr_w)
        self._fw_v = [fw[: i + 1] for i in range(21)]        # address + i data bytes
        self._fr_v = [fr[: i + 1] for i in range(21)]
        self._fr_w_v = [frw[20 - i:] for i in range(21)]     # i reads + terminator
        self.buf = bytearray(18)  # frame to send
        self.rx = bytearray(20)   # received frame
        self.rx_bits = 0          # valid bits in rx (bytes * 8, or 4 for ACK/NAK)
        self.uid = bytearray(10)
        self.uid_len = 0
        self.sak = 0
        self.atqa = 0
        self._reload = -1
        self._selected = False
        self._crypto = False      # MFCrypto1On set by the last authentication
        self.polls = 0            # status polls of the last command
        cs.value(1)
        self.init()

    # -- register access ---------------------------------------------------
    def _wr(self, reg, val):
        w = self._w2
        w[0] = reg << 1
        w[1] = val
        self.cs.value(0)
        self.spi.write(w)
        self.cs.value(1)

    def _rd(self, reg):
        w = self._w2
        w[0] = 0x80 | (reg << 1)
        w[1] = 0
        self.cs.value(0)
        self.spi.write_readinto(w, self._r2)
        self.cs.value(1)
        return self._r2[1]

    def read_reg(self, reg):
        return self._rd(reg)

    def write_reg(self, reg, val):
        self._wr(reg, val)

    def _status(self):
        """ComIrqReg, ErrorReg, FIFOLevelReg, ControlReg, Status2Reg in one transfer."""
        self.cs.value(0)
        self.spi.write_readinto(self._ws, self._rs)
        self.cs.value(1)
        return self._rs[1]

    def _fifo_write(self, buf, n):
        fw = self._fw
        for i in range(n):
            fw[1 + i] = buf[i]
        self.cs.value(0)
        self.spi.write(self._fw_v[n])
        self.cs.value(1)

    def _fifo_read(self, n):
        self.cs.value(0)
        self.spi.write_readinto(self._fr_w_v[n], self._fr_v[n])
        self.cs.value(1)
        rx = self.rx
        fr = self._fr
        for i in range(n):
            rx[i] = fr[1 + i]

    # -- chip set-up -------------------------------------------------------
    def init(self):
        v = 0
        if self.rst is not None:
            # hard reset (NRSTPD low >= 100 ns), then wait for the oscillator:
            # t_osc = crystal start-up + 37.74 us (datasheet 8.8.3), the
            # crystal's part unknown here, so poll for up to 5 ms
            self.rst.value(0)
            self.clock.delay_us(100)
            self.rst.value(1)
            for _ in range(50):
                self.clock.delay_us(100)
                v = self._rd(_VersionReg)
                if v in VERSIONS:
                    break
        else:
            v = self._rd(_VersionReg)
        if v not in VERSIONS:
            raise NoChip("no MFRC522 answers on SPI (VersionReg=0x%02x, expected 0x91/0x92)" % v)
        self.version = v
        self._wr(_CommandReg, _SOFT_RESET)
        self.clock.delay_us(50)
        n = 0
        while self._rd(_CommandReg) & _POWER_DOWN:  # set until the reset is done
            n += 1
            if n > 20:
                raise NoChip("MFRC522 does not leave soft reset")
            self.clock.delay_us(100)
        self._wr(_TModeReg, 0x80 | (_PRESCALER >> 8))  # TAuto
        self._wr(_TPrescalerReg, _PRESCALER & 0xFF)
        self._reload = -1
        self._wr(_TxASKReg, 0x40)   # Force100ASK
        self._wr(_ModeReg, 0x3D)    # CRC preset 6363h (CRC_A)
        self._wr(_TxModeReg, 0x00)  # no hardware CRC: done in software
        self._wr(_RxModeReg, 0x00)
        self._wr(_CollReg, 0x00)    # clear received bits after a collision
        self._wr(_BitFramingReg, 0x00)
        self.antenna(True)
        self._selected = False

    # -- power (datasheet 8.6) ---------------------------------------------
    def power_down(self):
        """Soft power-down (8.6.2): the field and the clock stop, the
        registers and the FIFO keep their contents. Cards in the field lose
        power, so the next poll finds them idle."""
        self._wr(_CommandReg, _POWER_DOWN | _IDLE)
        self._selected = False
        self._crypto = False

    def wake(self):
        """Leave soft power-down: clear PowerDown, then wait until the chip
        clears it itself (oscillator start-up + 1024 clocks; a command
        written before that is lost). Polls every 50 us for up to 5 ms.
        Returns the polls it took; raises NoChip when the bit stays set."""
        self._wr(_CommandReg, _IDLE)
        for n in range(100):
            if not self._rd(_CommandReg) & _POWER_DOWN:
                return n
            self.clock.delay_us(50)
        raise NoChip("MFRC522 does not leave soft power-down")

    def hard_power_down(self):
        """NRSTPD low (8.6.1): everything off and lost; init() brings the chip
        back. Without an RST pin, soft power-down is the lowest state."""
        if self.rst is None:
            self.power_down()
            return
        self.rst.value(0)
        self._selected = False
        self._crypto = False

    def antenna(self, on):
        v = self._rd(_TxControlReg)
        want = (v | 0x03) if on else (v & 0xFC)
        if want != v:
            self._wr(_TxControlReg, want)

    def _timer(self, us):
        reload = us // _TICK_US
        if reload != self._reload:
            if (reload >> 8) != (self._reload >> 8) or self._reload < 0:
                self._wr(_TReloadRegH, reload >> 8)
            self._wr(_TReloadRegL, reload & 0xFF)
            self._reload = reload

    # -- the one exchange primitive ----------------------------------------
    def _start(self, n, timeout_us):
        self._wr(_CommandReg, _IDLE)
        self._wr(_ComIrqReg, 0x7F)
        self._wr(_FIFOLevelReg, 0x80)
        self._fifo_write(self.buf, n)
        self._timer(timeout_us)

    def _wait(self, first_us, timeout_us, done_mask):
        """Sleep through the expected air time, then poll until an IRQ in
        done_mask, an error or the chip's timer. Returns ComIrqReg."""
        self.clock.delay_us(first_us)
        step = timeout_us // 4 if timeout_us > 400 else 100
        n = 0
        limit = 4 + timeout_us // step + 20
        while True:
            irq = self._status()
            n += 1
            if irq & (done_mask | _ERR_IRQ | _TIMER_IRQ):
                self.polls = n
                return irq
            if n > limit:  # the chip's timer never fired: treat as a time-out
                self.polls = n
                return _TIMER_IRQ
            self.clock.delay_us(step)

    def _xfer(self, n, txbits, rxalign, timeout_us, expect):
        """One Transceive. Returns received bits (>= 0) or a negative status:
        -1 time-out, -2 collision, -3 frame error. Allocates nothing."""
        self._start(n, timeout_us)
        self._wr(_CommandReg, _TRANSCEIVE)
        self._wr(_BitFramingReg, 0x80 | (rxalign << 4) | txbits)
        irq = self._wait(_air_us(n) + 86 + _air_us(expect), timeout_us + 200, _RX_IRQ)
        rs = self._rs
        err = rs[2]
        if not irq & _RX_IRQ:
            self._wr(_CommandReg, _IDLE)
            if irq & _TIMER_IRQ or not irq & _ERR_IRQ:
                return -1
        if err & _COLL_ERR:
            return -2
        level = rs[3] & 0x7F
        if err & (_PARITY_ERR | _PROTOCOL_ERR | _BUFFER_OVFL) or level > 20:
            return -3
        last = rs[4] & 0x07
        self._fifo_read(level)
        bits = level * 8 if last == 0 else (level - 1) * 8 + last
        self.rx_bits = bits
        return bits

    def transceive(self, n, txbits=0, rxalign=0, timeout_us=T_SHORT, crc=False, expect=1):
        """Send buf[:n] (the last byte holding txbits bits, 0 = 8), with a CRC_A
        appended when crc is true; receive into rx. Returns the number of
        valid bits received. Raises Timeout/CardGone/CRCError/Collision."""
        buf = self.buf
        if crc:
            c = crc_a(buf, n)
            buf[n] = c & 0xFF
            buf[n + 1] = c >> 8
            n += 2
        bits = self._xfer(n, txbits, rxalign, timeout_us, expect)
        if bits >= 0:
            return bits
        if bits == -1:
            if self._selected:
                self._selected = False
                raise CardGone("card gone")
            raise Timeout("no answer")
        if bits == -2:
            raise Collision("collision")
        raise CRCError("frame error 0x%02x" % self._rs[2])

    # -- ISO 14443-3 -------------------------------------------------------
    def request(self, wake=False):
        """REQA (or WUPA, which also wakes halted cards). Returns ATQA as an
        int, or 0 when no card answers. Allocates nothing when no card is there."""
        if self._crypto:
            self.stop_crypto()       # a REQA under MFCrypto1On would go out encrypted
        self.buf[0] = _WUPA if wake else _REQA
        self._selected = False
        bits = self._xfer(1, 7, 0, T_SHORT, 2)
        if bits == -1:
            return 0
        if bits == -2:
            return 0x0044  # several cards answered: ATQA is not meaningful
        if bits != 16:
            raise CRCError("bad ATQA")
        self.atqa = self.rx[0] | self.rx[1] << 8
        return self.atqa

    def _cascade(self, level, out):
        """Anticollision + SELECT at one cascade level; out receives UID CLn (4
        bytes) and BCC. Returns the SAK."""
        sel = _SEL[level]
        known = 0
        buf = self.buf
        rx = self.rx
        for i in range(5):
            out[i] = 0
        while known < 40:
            nbytes = known >> 3
            nbit = known & 7
            buf[0] = sel
            buf[1] = ((2 + nbytes) << 4) | nbit
            for i in range(nbytes + (1 if nbit else 0)):
                buf[2 + i] = out[i]
            n = 2 + nbytes + (1 if nbit else 0)
            try:
                bits = self.transceive(n, txbits=nbit, rxalign=nbit, timeout_us=T_SHORT, expect=5 - nbytes)
                coll = -1
            except Collision:
                cr = self._rd(_CollReg)
                if cr & 0x20:
                    raise
                pos = cr & 0x1F
                if pos == 0:
                    pos = 32
                coll = nbytes * 8 + pos - 1  # absolute bit of the collision
                if coll < known or coll >= 40:
                    raise
                bits = (self._rs[3] & 0x7F) * 8
                self._fifo_read(self._rs[3] & 0x7F)
            # merge received bits; FIFO byte i holds UID bits (nbytes + i) * 8 ..
            end = nbytes * 8 + bits
            limit = coll if coll >= 0 else end
            if limit > 40:
                limit = 40
            for b in range(known, limit):
                i = (b >> 3) - nbytes
                m = 1 << (b & 7)
                if rx[i] & m:
                    out[b >> 3] |= m
                else:
                    out[b >> 3] &= ~m & 0xFF
            if coll < 0:
                if end < 40:
                    raise CRCError("short anticollision answer")
                known = 40
            else:
                out[coll >> 3] |= 1 << (coll & 7)  # follow the card with a 1 here
                known = coll + 1
        if out[0] ^ out[1] ^ out[2] ^ out[3] ^ out[4]:
            raise CRCError("BCC")
        buf[0] = sel
        buf[1] = 0x70
        for i in range(5):
            buf[2 + i] = out[i]
        bits = self.transceive(7, crc=True, timeout_us=T_SHORT, expect=3)
        if bits != 24 or crc_a(rx, 3):
            raise CRCError("SAK CRC")
        return rx[0]

    def select(self):
        """Anticollision and SELECT through the cascade levels (4, 7 or 10-byte
        UIDs). Call after request(). Fills uid/uid_len/sak. Returns uid_len.
        Raises Unsupported for a card that is not MIFARE Classic 1K or 4K."""
        out = bytearray(5)
        u = self.uid
        n = 0
        for level in range(3):
            sak = self._cascade(level, out)
            if sak & 0x04:  # cascade bit: UID not complete
                if out[0] != 0x88:
                    raise CRCError("cascade tag")
                u[n] = out[1]
                u[n + 1] = out[2]
                u[n + 2] = out[3]
                n += 3
                continue
            for i in range(4):
                u[n + i] = out[i]
            n += 4
            break
        self.uid_len = n
        self.sak = sak
        self._selected = True
        if sak not in (0x08, 0x18, 0x88):
            raise Unsupported(sak)
        return n

    def is_4k(self):
        return bool(self.sak & 0x10)

    def halt(self):
        """HLTA. The card does not answer: a time-out is the good outcome."""
        self.buf[0] = 0x50
        self.buf[1] = 0
        sel = self._selected
        self._selected = False
        try:
            self.transceive(2, crc=True, timeout_us=T_HALT)
        except Timeout:
            pass
        else:
            if sel:
                raise NAK(self.rx[0] & 0x0F)
        self.stop_crypto()

    def stop_crypto(self):
        """Clear MFCrypto1On: the reader's end of the Crypto1 session stops
        (nothing goes on air; the card still expects ciphertext)."""
        self._wr(_Status2Reg, 0x00)
        self._crypto = False

    # -- MIFARE Classic ----------------------------------------------------
    def auth(self, block, key, key_b=False):
        """MFAuthent with key A (or B) for block. Uses the 4 UID bytes of the
        last cascade level (uid[uid_len-4:]; NXP AN10927)."""
        buf = self.buf
        buf[0] = 0x61 if key_b else 0x60
        buf[1] = block
        for i in range(6):
            buf[2 + i] = key[i]
        u0 = self.uid_len - 4
        for i in range(4):
            buf[8 + i] = self.uid[u0 + i]
        self._start(12, T_AUTH)
        self._wr(_CommandReg, _MF_AUTHENT)
        irq = self._wait(2 * (_air_us(4) + _air_us(8)) + 172, 2 * T_AUTH + 400, _IDLE_IRQ)
        if irq & _IDLE_IRQ and self._rs[5] & 0x08:
            self._crypto = True
            return
        self._wr(_CommandReg, _IDLE)
        self._selected = False  # the card drops to IDLE/HALT after a failed auth
        raise AuthFailed("authentication failed for block %d" % block)

    def _ack(self, bits):
        if bits != 4:
            raise CRCError("expected a 4-bit ACK")
        a = self.rx[0] & 0x0F
        if a != _ACK:
            self._selected = False
            raise NAK(a)

    def read(self, block, into):
        """READ one 16-byte block into `into` (CRC_A checked)."""
        buf = self.buf
        buf[0] = 0x30
        buf[1] = block
        bits = self.transceive(2, crc=True, timeout_us=T_READ, expect=18)
        if bits == 4:
            self._ack(bits)
        if bits != 144:
            raise CRCError("short READ answer")
        rx = self.rx
        if crc_a(rx, 18):
            raise CRCError("READ CRC")
        for i in range(16):
            into[i] = rx[i]
        return into

    def write(self, block, data):
        """WRITE, two steps, each acknowledged by the card's 4-bit ACK."""
        buf = self.buf
        buf[0] = 0xA0
        buf[1] = block
        self._ack(self.transceive(2, crc=True, timeout_us=T_WRITE1))
        for i in range(16):
            buf[i] = data[i]
        self._ack(self.transceive(16, crc=True, timeout_us=T_WRITE2))

    def _value_op(self, cmd, block, operand):
        buf = self.buf
        buf[0] = cmd
        buf[1] = block
        self._ack(self.transceive(2, crc=True, timeout_us=T_WRITE1))
        v = operand & 0xFFFFFFFF
        for i in range(4):
            buf[i] = (v >> (8 * i)) & 0xFF
        sel = self._selected
        self._selected = False
        try:
            bits = self.transceive(4, crc=True, timeout_us=T_WRITE1)
        except Timeout:
            self._selected = sel
            return  # no answer is success for the second part
        self._ack(bits)
        raise NAK(self.rx[0] & 0x0F)

    def increment(self, block, delta):
        self._value_op(0xC1, block, delta)

    def decrement(self, block, delta):
        self._value_op(0xC0, block, delta)

    def restore(self, block):
        self._value_op(0xC2, block, 0)

    def transfer(self, block):
        buf = self.buf
        buf[0] = 0xB0
        buf[1] = block
        self._ack(self.transceive(2, crc=True, timeout_us=T_TRANSFER))

    # -- CRC coprocessor ---------------------------------------------------
    def calc_crc(self, data):
        """CRC_A of data computed by the chip's coprocessor (self-test)."""
        n = len(data)
        for i in range(n):
            self.buf[i] = data[i]
        self._wr(_CommandReg, _IDLE)
        self._wr(_DivIrqReg, 0x04)
        self._wr(_FIFOLevelReg, 0x80)
        self._fifo_write(self.buf, n)
        self._wr(_CommandReg, _CALC_CRC)
        for _ in range(20):
            if self._rd(_DivIrqReg) & 0x04:
                break
            self.clock.delay_us(10)
        else:
            raise Timeout("CRC coprocessor")
        self._wr(_CommandReg, _IDLE)
        return self._rd(_CRCResultRegL) | self._rd(_CRCResultRegH) << 8
