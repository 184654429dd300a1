# Register-level model of the NXP MFRC522 contactless reader IC (datasheet
# rev. 3.9) for the unix board.
#
# SPI side (attach to a SimSPI bus with bus.attach(cs_pin, model)):
#   first byte after CS falls: address byte, (addr << 1) | 0x80 to read,
#   (addr << 1) to write. Read: every further MOSI byte is the next address
#   to read (0x00 ends), MISO returns the register addressed by the previous
#   byte. Write: every further MOSI byte is written to the same address (so a
#   burst to FIFODataReg fills the FIFO).
#
# Chip side: the 64-byte FIFO, CommandReg (Idle, Mem, CalcCRC, Transmit,
# Receive, Transceive, MFAuthent, SoftReset), ComIrqReg/DivIrqReg with their
# Set1/Set2 write semantics, ErrorReg, Status1Reg, Status2Reg (MFCrypto1On),
# BitFramingReg (StartSend, RxAlign, TxLastBits), ControlReg (RxLastBits,
# TStartNow, TStopNow), CollReg (CollPos, ValuesAfterColl), TxModeReg/RxModeReg
# CRC enables, the CRC coprocessor (preset from ModeReg), TxControlReg antenna
# bits, TxASKReg Force100ASK and the timer (TModeReg TAuto, 12-bit prescaler,
# 16-bit reload; f = 13.56 MHz / (2 * TPrescaler + 1)). VersionReg = 0x92.
#
# Time is the SimClock's: a command started at t schedules its outcome (frame
# received, timer expiry, authentication done) at the instant the air interface
# would produce it, and register reads see the state as of "now". The timer
# runs from the end of transmission (TAuto) and stops when a response starts,
# exactly as on the chip, so a driver that sets no timer waits for ever.
#
# Cards (boards/unix/mifare_card.py) hear every frame while the antenna is on
# with 100 % ASK; responses of several cards are merged bit by bit and a
# disagreement is reported as a collision (ErrorReg.CollErr, CollReg.CollPos,
# counted from 1 at bit 0 of the first FIFO byte, RxAlign included).
# MFCrypto1 (Status2Reg bit 3): set by a successful MFAuthent, when the
# reader and the card start a keystream (mifare_card.Keystream, standing in
# for Crypto1); while it is set every frame sent is encrypted and every frame
# received decrypted. Clearing it only stops the reader's end: nothing goes
# on air, the card stays authenticated, and the next frame, now in clear,
# is noise to the card, which drops to IDLE. A nested MFAuthent runs under
# the old session, so it needs MFCrypto1On set and both ends in step.
#
# Hard power-down (datasheet 8.6.1, 8.8): NRSTPD low stops the oscillator and
# the RF field (cards lose power), and the SPI is not served (reads 0). The
# rising edge is a hard reset: every register back to its reset value, and
# the chip answers again after t_osc = t_startup + t_d, t_d = 1024 / 27.12 MHz
# = 37.74 us. t_startup is the crystal's start-up, which the datasheet leaves
# to the crystal; the model takes STARTUP_US.
#
# Soft power-down (datasheet 8.6.2; CommandReg bit 4, PowerDown, 9.3.1.2):
# writing PowerDown = 1 switches every current sink off, the oscillator
# buffer included: the running command ends, the RF field goes (cards lose
# power) and nothing runs. The registers, the FIFO and the configuration
# keep their contents, and the SPI is still served (the host must be able to
# clear the bit). Writing PowerDown = 0 starts the wake-up: the bit reads 1
# until the oscillator is stable again and 1024 clocks have passed (the model:
# STARTUP_US + SOFT_WAKE_US), and it clears itself. Until then no command
# runs: a command written during the power-down or the wake-up is lost
# (CommandReg's low bits keep Idle), so a driver that does not wait for
# PowerDown = 0 sends nothing. The field comes back with the clock when
# TxControlReg still enables it (it kept its content).
#
# Statistics for the power budget (bench): active_us (oscillator running),
# field_us (RF field on), polls (REQA/WUPA frames sent).
#
# Test hooks: place(card), remove(card=None) (a card pulled while its answer
# or its EEPROM write is still in flight gets torn), inject_rf_error(kind)
# with kind in "crc", "parity", "protocol", "collision", "drop" for the next
# received frame.
try:
    from mifare_card import to_bits, from_bits, crc_a, Keystream
except ImportError:
    from boards.unix.mifare_card import to_bits, from_bits, crc_a, Keystream

# registers
CommandReg = 0x01
ComIEnReg = 0x02
DivIEnReg = 0x03
ComIrqReg = 0x04
DivIrqReg = 0x05
ErrorReg = 0x06
Status1Reg = 0x07
Status2Reg = 0x08
FIFODataReg = 0x09
FIFOLevelReg = 0x0A
WaterLevelReg = 0x0B
ControlReg = 0x0C
BitFramingReg = 0x0D
CollReg = 0x0E
ModeReg = 0x11
TxModeReg = 0x12
RxModeReg = 0x13
TxControlReg = 0x14
TxASKReg = 0x15
CRCResultRegH = 0x21
CRCResultRegL = 0x22
TModeReg = 0x2A
TPrescalerReg = 0x2B
TReloadRegH = 0x2C
TReloadRegL = 0x2D
TCounterValRegH = 0x2E
TCounterValRegL = 0x2F
VersionReg = 0x37

# commands
IDLE = 0x0
MEM = 0x1
GENERATE_RANDOM_ID = 0x2
CALC_CRC = 0x3
TRANSMIT = 0x4
NO_CMD_CHANGE = 0x7
RECEIVE = 0x8
TRANSCEIVE = 0xC
MF_AUTHENT = 0xE
SOFT_RESET = 0xF

# ComIrqReg bits
TX_IRQ = 0x40
RX_IRQ = 0x20
IDLE_IRQ = 0x10
HI_ALERT_IRQ = 0x08
LO_ALERT_IRQ = 0x04
ERR_IRQ = 0x02
TIMER_IRQ = 0x01
# ErrorReg bits
BUFFER_OVFL = 0x10
COLL_ERR = 0x08
CRC_ERR = 0x04
PARITY_ERR = 0x02
PROTOCOL_ERR = 0x01

_RESET = {
    CommandReg: 0x20, ComIEnReg: 0x80, ComIrqReg: 0x14, Status1Reg: 0x21,
    WaterLevelReg: 0x08, ControlReg: 0x10, CollReg: 0xA0, ModeReg: 0x3F,
    TxControlReg: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D,
    0x1C: 0x62, 0x1F: 0xEB, CRCResultRegH: 0xFF, CRCResultRegL: 0xFF,
    0x24: 0x26, 0x26: 0x48, 0x27: 0x88, 0x28: 0x20, 0x29: 0x20,
}
_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)
STARTUP_US = 300          # crystal start-up after a hard power-down (assumed, crystal-dependent)
T_D_US = 38               # 1024 clocks of 27.12 MHz: the chip's own delay once the clock runs
SOFT_WAKE_US = 76         # 8.6.2: 1024 clocks (of 13.56 MHz) after PowerDown is cleared
POWER_DOWN = 0x10         # CommandReg bit 4


def air_us(nbits):
    """Time on air of a 106 kbit/s frame of nbits data bits: one parity bit
    per byte, start of frame and end of frame; one bit is 128/fc = 9.44 us."""
    return (nbits + (nbits + 7) // 8 + 2) * 944 // 100


def _crc(preset, data):
    if preset == 0x6363:
        return crc_a(data)
    crc = preset
    for b in data:
        b = (b ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return crc


class MFRC522Model:
    def __init__(self, clock, version=0x92):
        self.clock = clock
        self.version = version
        self.cards = []
        self.reg = bytearray(64)
        self.fifo = bytearray()
        self._events = []
        self._gen = 0
        self._inject = None
        self._inject_after = 0
        self._timer_end = None
        self._addr = None
        self._read = False
        self._first = False
        self._crypto = None       # the reader's end of the session while MFCrypto1On
        self._seeds = 0x2545F491  # session seeds: a new one per authentication
        self._down = False        # NRSTPD low: hard power-down
        self._ready_at = 0        # after a hard reset: the chip answers from here
        self._pending_seed = 0
        self._soft_down = False   # CommandReg PowerDown: soft power-down (or waking from it)
        self._wake_at = None      # when the wake-up from soft power-down ends
        # statistics for benchmarks
        self.active_us = 0
        self.field_us = 0
        self.polls = 0
        self._since = clock.now_us()
        self.frames = 0
        self.reg_reads = 0
        self.reg_writes = 0
        self._soft_reset()

    # -- test hooks --------------------------------------------------------
    def place(self, card):
        card.power_off()
        if card not in self.cards:
            self.cards.append(card)

    def remove(self, card=None):
        self._tick()
        gone = list(self.cards) if card is None else [card]
        for c in gone:
            if c in self.cards:
                self.cards.remove(c)
            for e in self._events:
                if e[3] != self._gen or e[5]:
                    continue
                if e[1] == "rx":
                    before = len(e[2])
                    e[2][:] = [x for x in e[2] if x[0] is not c]
                    if len(e[2]) == before:
                        continue
                    c.tear()  # answer (and EEPROM write) still in flight
                    if e[2]:
                        continue
                elif e[1] == "auth" and e[2] is c:
                    e[2] = None
                else:
                    continue
                e[5] = True
                if e[4] is not None:  # nothing left to receive: the timer fires
                    self._schedule(max(e[4], self._now()), "timeout", None)
            c.power_off()

    def inject_rf_error(self, kind, after=0):
        """Spoil the next received frame (or the one after `after` good ones)."""
        if kind not in ("crc", "parity", "protocol", "collision", "drop"):
            raise ValueError(kind)
        self._inject = kind
        self._inject_after = after

    def attach_rst(self, pin):
        """The NRSTPD pin: low = hard power-down, rising edge = hard reset."""
        def edge(p, old, new):
            self._account()
            if new and not old:
                self._down = False
                self._soft_reset()
                self._ready_at = self._now() + STARTUP_US + T_D_US
            elif old and not new:
                self._down = True
                self._soft_reset()      # oscillator off: nothing runs, nothing is kept
        pin.watch(edge)
        if not pin.value():             # held low from the start (a board's pull-down)
            self._soft_reset()
            self._down = True

    def _serving(self):
        return not self._down and self._now() >= self._ready_at

    def _running(self):
        """The oscillator runs: not in either power-down, not waking."""
        return not self._down and not self._soft_down and self._now() >= self._ready_at

    def power_state(self):
        """'hard', 'soft' (soft power-down or waking from it), 'starting'
        (oscillator start-up after a hard reset) or 'on'."""
        self._tick()
        if self._down:
            return "hard"
        if self._soft_down:
            return "soft"
        return "on" if self._now() >= self._ready_at else "starting"

    def usage(self):
        """(active_us, field_us, polls) so far, for the power budget."""
        self._tick()
        self._account()
        return self.active_us, self.field_us, self.polls

    def _account(self, upto=None):
        # time in each power state up to now (called before every change of
        # the power state or of the field)
        now = self._now() if upto is None else upto
        if not self._down and not self._soft_down:
            start = self._ready_at if self._ready_at > self._since else self._since
            if now > start:
                self.active_us += now - start
                if self._field_on():
                    self.field_us += now - start
        self._since = now

    attach_reset = attach_rst

    # -- SPI side ----------------------------------------------------------
    def select(self):
        self._first = True
        self._addr = None

    def deselect(self):
        self._addr = None

    def exchange(self, b):
        if not self._serving():
            self._addr = None
            return 0
        if self._first:
            self._first = False
            self._read = bool(b & 0x80)
            self._addr = (b >> 1) & 0x3F
            return 0
        if self._addr is None:
            return 0
        if self._read:
            out = self.read_reg(self._addr)
            self._addr = (b >> 1) & 0x3F
            return out
        self.write_reg(self._addr, b)
        return 0

    # -- registers ---------------------------------------------------------
    def read_reg(self, a):
        self._tick()
        self.reg_reads += 1
        r = self.reg
        if a == FIFODataReg:
            if self.fifo:
                v = self.fifo[0]
                self.fifo = self.fifo[1:]
                return v
            return 0
        if a == FIFOLevelReg:
            return len(self.fifo)
        if a == VersionReg:
            return self.version
        if a == CommandReg:
            return r[CommandReg] | (POWER_DOWN if self._soft_down else 0)
        if a == Status1Reg:
            v = r[Status1Reg] & 0x60  # CRCOk, CRCReady
            if self._timer_end is not None:
                v |= 0x08
            if (r[ComIrqReg] & r[ComIEnReg] & 0x7F) or (r[DivIrqReg] & r[DivIEnReg] & 0x1F):
                v |= 0x10
            wl = r[WaterLevelReg] & 0x3F
            if 64 - len(self.fifo) <= wl:
                v |= 0x02
            if len(self.fifo) <= wl:
                v |= 0x01
            return v
        if a in (TCounterValRegH, TCounterValRegL):
            left = 0
            if self._timer_end is not None:
                left = max(0, self._timer_end - self._now()) * 1356 // (100 * self._presc2())
            return (left >> 8) & 0xFF if a == TCounterValRegH else left & 0xFF
        if a == 0x00 or a >= 0x38:
            return 0
        return r[a]

    def write_reg(self, a, v):
        self._tick()
        self.reg_writes += 1
        r = self.reg
        if a == FIFODataReg:
            if len(self.fifo) >= 64:
                r[ErrorReg] |= BUFFER_OVFL
            else:
                self.fifo.append(v)
        elif a == FIFOLevelReg:
            if v & 0x80:
                self.fifo = bytearray()
                r[ErrorReg] &= ~BUFFER_OVFL & 0xFF
        elif a == ComIrqReg:
            if v & 0x80:
                r[a] |= v & 0x7F
            else:
                r[a] &= ~v & 0x7F
        elif a == DivIrqReg:
            if v & 0x80:
                r[a] |= v & 0x14
            else:
                r[a] &= ~v & 0x14
        elif a == CommandReg:
            r[a] = (r[a] & 0x0F) | (v & 0x20)     # RcvOff; PowerDown lives in _soft_down
            cmd = v & 0x0F
            if v & POWER_DOWN and cmd != SOFT_RESET:
                self._power_down()
                return
            if self._soft_down:
                if self._wake_at is None:       # PowerDown = 0: the wake-up starts
                    self._wake_at = self._now() + STARTUP_US + SOFT_WAKE_US
                return                          # no clock yet: the command is lost
            if cmd != NO_CMD_CHANGE:
                self._command(cmd)
        elif a == BitFramingReg:
            r[a] = v
            if v & 0x80 and (r[CommandReg] & 0x0F) == TRANSCEIVE and self._running():
                self._transmit(True)
        elif a == ControlReg:
            if not self._running():
                return
            if v & 0x80:
                self._timer_end = None
            if v & 0x40:
                self._start_timer(self._now())
        elif a == Status2Reg:
            if not v & 0x08:
                # only the reader's end stops: nothing goes on air, so the
                # card stays authenticated until it hears a frame in clear
                r[a] &= 0xF7
                self._crypto = None
            r[a] = (r[a] & 0x0F) | (v & 0xC0)
        elif a in (TxControlReg, TxASKReg):
            self._account()
            if a == TxASKReg:
                r[a] = v
                return
            r[a] = v
            self._antenna(v & 0x03)
        elif a in (ErrorReg, Status1Reg, VersionReg, CRCResultRegH,
                   CRCResultRegL, TCounterValRegH, TCounterValRegL):
            pass  # read-only
        elif a == CollReg:
            r[a] = (r[a] & 0x7F) | (v & 0x80)
        elif a < 0x38:
            r[a] = v

    # -- internals ---------------------------------------------------------
    def _now(self):
        return self.clock.now_us()

    def _schedule(self, t, kind, payload, timeout_at=None):
        e = [t, kind, payload, self._gen, timeout_at, False]
        self._events.append(e)
        self._events.sort(key=lambda x: x[0])
        return e

    def _power_down(self):
        # 8.6.2: the command ends, the clock and the field stop; the
        # registers and the FIFO keep their contents
        self._account()
        self._gen += 1
        self._events = []
        self._timer_end = None
        self._crypto = None
        self.reg[Status2Reg] &= 0xF7
        self.reg[CommandReg] &= 0xF0        # Idle
        self._soft_down = True
        self._wake_at = None
        for c in self.cards:
            c.power_off()

    def _tick(self):
        if self._wake_at is not None and self._now() >= self._wake_at:
            self._account(self._wake_at)    # asleep until then, awake from there
            self._soft_down = False
            self._wake_at = None
        if not self._events:
            return
        now = self._now()
        while self._events and self._events[0][0] <= now:
            e = self._events.pop(0)
            if e[3] != self._gen:
                continue
            self._fire(e)

    def _soft_reset(self):
        self._account()
        self._soft_down = False
        self._wake_at = None
        self._gen += 1
        self._events = []
        self.reg = bytearray(64)
        for a, v in _RESET.items():
            self.reg[a] = v
        self.reg[CommandReg] = 0x20  # RcvOff, Idle
        self.fifo = bytearray()
        self._timer_end = None
        self._crypto = None
        self._antenna(False)

    def _antenna(self, on):
        if not on:
            for c in self.cards:
                c.power_off()

    def _field_on(self):
        return (not self._soft_down and not self._down
                and (self.reg[TxControlReg] & 0x03) and (self.reg[TxASKReg] & 0x40))

    def _presc2(self):
        p = ((self.reg[TModeReg] & 0x0F) << 8) | self.reg[TPrescalerReg]
        return 2 * p + 1

    def _timer_us(self):
        reload = (self.reg[TReloadRegH] << 8) | self.reg[TReloadRegL]
        return self._presc2() * (reload + 1) * 100 // 1356

    def _start_timer(self, t):
        self._timer_end = t + self._timer_us()
        self._schedule(self._timer_end, "timeout", None)

    def _command(self, cmd):
        r = self.reg
        self._gen += 1  # a new command ends the previous one
        self._timer_end = None
        r[CommandReg] = (r[CommandReg] & 0xF0) | cmd
        if cmd == SOFT_RESET:
            self._soft_reset()
            return
        if cmd == IDLE:
            return
        if cmd == CALC_CRC:
            c = _crc(_PRESETS[r[ModeReg] & 0x03], bytes(self.fifo))
            self.fifo = bytearray()
            r[CRCResultRegH] = c >> 8
            r[CRCResultRegL] = c & 0xFF
            r[DivIrqReg] |= 0x04
            r[Status1Reg] |= 0x20
            return  # CalcCRC stays active until the host changes the command
        if cmd == TRANSMIT:
            self._transmit(False)
            return
        if cmd == MF_AUTHENT:
            self._authent()
            return
        if cmd in (TRANSCEIVE, RECEIVE):
            r[ErrorReg] &= 0xC0
            return
        if cmd in (MEM, GENERATE_RANDOM_ID):
            r[ComIrqReg] |= IDLE_IRQ
            r[CommandReg] &= 0xF0
            return

    def _transmit(self, receive):
        r = self.reg
        now = self._now()
        data = bytes(self.fifo)
        self.fifo = bytearray()
        r[ErrorReg] &= 0xC0
        last = r[BitFramingReg] & 0x07
        nbits = len(data) * 8 if last == 0 else (len(data) - 1) * 8 + last
        bits = to_bits(data, max(0, nbits))
        if nbits == 7 and data and data[0] in (0x26, 0x52):
            self.polls += 1             # REQA / WUPA: a look for a card
        if r[TxModeReg] & 0x80 and last == 0:
            c = crc_a(data)
            bits += to_bits(bytes((c & 0xFF, c >> 8)))
        ks = self._crypto
        if ks is not None:
            bits = ks.xor(bits)     # MFCrypto1On: on air, only ciphertext
        self.frames += 1
        tx_end = now + air_us(len(bits))
        self._schedule(tx_end, "tx", None)
        if not receive:
            self._schedule(tx_end, "idle", None)
            if self._field_on():
                for c in list(self.cards):
                    c.rf(bits)
            return
        resps = []
        if self._field_on():
            for c in list(self.cards):
                out = c.rf(bits)
                if out is not None:
                    resps.append([c, out[0], out[1]])
        if ks is not None and len(resps) == 1:
            resps[0][1] = ks.xor(resps[0][1])
        timer = self._timer_us() if r[TModeReg] & 0x80 else None
        timeout_at = tx_end + timer if timer is not None else None
        if timer is not None:
            self._timer_end = timeout_at
        if resps:
            fdt = min(x[2] for x in resps)
            if timer is not None and fdt >= timer:
                self._schedule(timeout_at, "timeout", None)
                timeout_at = None
            nb = max(len(x[1]) for x in resps)
            self._schedule(tx_end + fdt + air_us(nb), "rx", resps, timeout_at=timeout_at)
        elif timeout_at is not None:
            self._schedule(timeout_at, "timeout", None)

    def _authent(self):
        r = self.reg
        now = self._now()
        data = bytes(self.fifo)
        self.fifo = bytearray()
        r[ErrorReg] &= 0xC0
        self.frames += 2
        timer = self._timer_us() if r[TModeReg] & 0x80 else None
        tx1 = now + air_us(32)
        if len(data) < 12 or not self._field_on():
            if timer is not None:
                self._timer_end = tx1 + timer
                self._schedule(tx1 + timer, "timeout", None)
            return
        card = None
        for c in self.cards:
            if c.state == 2:  # ACTIVE
                card = c
                break
        if card is None:
            if timer is not None:
                self._timer_end = tx1 + timer
                self._schedule(tx1 + timer, "timeout", None)
            return
        step = card._t(86, 900)
        tx2 = tx1 + step + air_us(32) + air_us(64)
        # a nested authentication travels under the running session: both
        # ends must have one, in step; a first one needs neither to have one
        mine, theirs = self._crypto, card.crypto
        in_step = (mine is None and theirs is None
                   or mine is not None and theirs is not None and mine.pos == theirs.pos)
        self._seeds = (self._seeds * 1103515245 + 12345) & 0x7FFFFFFF
        seed = self._seeds
        ok = in_step and card.authenticate(data[0], data[1], data[2:8], data[8:12], Keystream(seed))
        if not in_step:
            card._reset_to_idle()   # it heard noise
        self._pending_seed = seed   # the reader's end starts when the card's answer is in
        if timer is not None and step >= timer:
            self._timer_end = tx1 + timer
            self._schedule(tx1 + timer, "timeout", None)
            return
        if ok:
            self._schedule(tx2 + step + air_us(32), "auth", card,
                           timeout_at=None if timer is None else tx2 + timer)
        elif timer is not None:
            self._timer_end = tx2 + timer
            self._schedule(tx2 + timer, "timeout", None)

    def _fire(self, e):
        r = self.reg
        kind = e[1]
        if kind == "tx":
            r[ComIrqReg] |= TX_IRQ
        elif kind == "idle":
            r[ComIrqReg] |= IDLE_IRQ
            r[CommandReg] &= 0xF0
        elif kind == "timeout":
            if self._timer_end is not None and self._timer_end <= e[0]:
                self._timer_end = None
                r[ComIrqReg] |= TIMER_IRQ
        elif kind == "auth":
            if e[2] is not None and e[2] in self.cards:
                r[Status2Reg] |= 0x08
                self._crypto = Keystream(self._pending_seed)
                r[ComIrqReg] |= IDLE_IRQ
                r[CommandReg] &= 0xF0
                self._timer_end = None
        elif kind == "rx":
            if not e[2]:
                return
            self._timer_end = None
            for x in e[2]:
                x[0]._pending = None  # the write (if any) completed
            self._receive([x[1] for x in e[2]])

    def _receive(self, resps):
        r = self.reg
        err = 0
        coll = None
        bits = list(resps[0])
        if len(resps) > 1:
            n = max(len(x) for x in resps)
            for i in range(n):
                col = [x[i] if i < len(x) else None for x in resps]
                if any(c != col[0] for c in col):
                    coll = i
                    break
            if coll is not None:
                keep = bool(r[CollReg] & 0x80)
                merged = []
                for i in range(n):
                    if i < coll:
                        merged.append(resps[0][i])
                    elif keep:
                        merged.append(1 if any(i < len(x) and x[i] for x in resps) else 0)
                    else:
                        merged.append(0)
                merged[coll] = 1 if keep else 0
                bits = merged
        kind = self._inject
        if kind is not None and self._inject_after > 0:
            self._inject_after -= 1
            kind = None
        elif kind is not None:
            self._inject = None
        if kind == "drop":
            return  # the frame never arrives: the timer (if any) ends the wait
        if kind == "crc":
            bits[-1] ^= 1
        elif kind == "parity":
            err |= PARITY_ERR
        elif kind == "protocol":
            err |= PROTOCOL_ERR
        elif kind == "collision":
            coll = min(3, len(bits) - 1)
        align = (r[BitFramingReg] >> 4) & 0x07
        total = align + len(bits)
        out = from_bits([0] * align + bits)
        lastbits = total % 8
        if r[RxModeReg] & 0x80 and lastbits == 0 and align == 0 and len(out) >= 3:
            if crc_a(out, len(out) - 2) != (out[-2] | out[-1] << 8):
                err |= CRC_ERR
            out = out[:-2]
            r[Status1Reg] |= 0x40 if not err & CRC_ERR else 0
        if coll is not None:
            err |= COLL_ERR
            pos = align + coll + 1
            if pos > 32:
                r[CollReg] = (r[CollReg] & 0x80) | 0x20
            else:
                r[CollReg] = (r[CollReg] & 0x80) | (pos & 0x1F)
        else:
            r[CollReg] = (r[CollReg] & 0x80) | 0x20
        if len(self.fifo) + len(out) > 64:
            err |= BUFFER_OVFL
            out = out[: 64 - len(self.fifo)]
        self.fifo += out
        r[ControlReg] = (r[ControlReg] & 0xF8) | lastbits
        r[ErrorReg] |= err
        r[ComIrqReg] |= RX_IRQ
        if err:
            r[ComIrqReg] |= ERR_IRQ
