# MIFARE Classic 1K / 4K card model (MF1S50 / MF1S70 behaviour) for the unix board.
#
# Runs under MicroPython (tests, `make sim`) and CPython (tools/cardtool.py).
# It models the card at the ISO/IEC 14443-3 frame level: `rf(bits)` takes the
# data bits a PCD sent (LSB first per byte, parity not modelled) and returns the
# bits the card answers with, or None when it stays silent. Crypto1 is
# modelled by its effect on air, not by its LFSR: at a successful
# authentication the reader model and the card agree on a keystream
# (`Keystream`, from a fresh seed), and from then on the card decrypts every
# bit it hears and encrypts every bit it answers, as both ends of a Crypto1
# link do. A reader that sends in clear to an authenticated card (or
# encrypted to a card that is not) is heard as noise: the card answers
# nothing sensible and drops to IDLE. `authenticate()` without a keystream
# (tools/cardtool.py's ideal reader) leaves the link transparent. Everything
# else is enforced as on the real card:
#   - IDLE / READY / ACTIVE / HALT states, REQA vs WUPA, HLTA;
#   - anticollision and SELECT at cascade levels 1 and 2 (4- and 7-byte UIDs),
#     bit-oriented anticollision frames answered from the split bit onwards;
#   - key A / key B checks; a failed auth drops the card back to IDLE/HALT;
#   - access conditions per block (data-block and sector-trailer tables);
#     "key B readable" means key B opens nothing;
#   - a trailer write with inconsistent access bits blocks the sector for good;
#   - value blocks, a transfer buffer, INCREMENT/DECREMENT/RESTORE/TRANSFER;
#   - CRC_A on every frame after anticollision; 4-bit ACK/NAK;
#   - torn writes: `tear()` (called when the card leaves the field while an
#     EEPROM write is in progress) leaves undetermined (mixed) block contents.
# The model's access-bit tables are written independently of firmware/card so
# that the firmware is tested against a second reading of the datasheet.
import json
import binascii

IDLE = 0
READY = 1
ACTIVE = 2
HALT = 3

ACK = 0x0A
NAK_INVALID = 0x04   # invalid operation / access denied
NAK_CRC = 0x05       # parity or CRC error

# data-block access table, index c1c2c3 (c1 is the MSB): allowed keys per
# operation, bit0 = key A, bit1 = key B. ops: read, write, increment,
# decrement/transfer/restore
_DATA = (
    (3, 3, 3, 3),  # 000 transport configuration
    (3, 0, 0, 3),  # 001 value block, non-rechargeable
    (3, 0, 0, 0),  # 010 read only
    (2, 2, 0, 0),  # 011
    (3, 2, 0, 0),  # 100
    (2, 0, 0, 0),  # 101
    (3, 2, 2, 3),  # 110 value block, rechargeable
    (0, 0, 0, 0),  # 111 no access
)
# sector-trailer table: keyA write, access-bits read, access-bits write,
# keyB read, keyB write
_TRAILER = (
    (1, 1, 0, 1, 1),  # 000
    (1, 1, 1, 1, 1),  # 001 transport configuration
    (0, 1, 0, 1, 0),  # 010
    (2, 3, 2, 0, 2),  # 011
    (2, 3, 0, 0, 2),  # 100
    (0, 3, 2, 0, 0),  # 101
    (0, 3, 0, 0, 0),  # 110
    (0, 3, 0, 0, 0),  # 111
)
_KEYB_READABLE = (0, 1, 2)  # trailer conditions where key B is data, not a key

# response times (us): frame delay time of a short answer, and worst-case
# processing budgets from the datasheet's time-out table (the card is modelled
# to answer at `slow` x budget: slow=0 gives the fastest card).
FDT_US = 86
# EEPROM programming time of the fast card: an assumption (the datasheet gives
# only the PCD time-outs: auth 1 ms per step, read 5 ms, write 5 + 10 ms,
# transfer 10 ms); slow=100 answers at 90 % of those time-outs.
EEPROM_US = 2500


def crc_a(data, n=None):
    """ISO/IEC 14443-3 CRC_A (preset 0x6363), returned as an int, LSB first on air."""
    crc = 0x6363
    if n is None:
        n = len(data)
    for i in range(n):
        b = (data[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return crc


def with_crc(data):
    c = crc_a(data)
    return bytes(data) + bytes((c & 0xFF, c >> 8))


def to_bits(data, nbits=None):
    if nbits is None:
        nbits = len(data) * 8
    return [(data[i >> 3] >> (i & 7)) & 1 for i in range(nbits)]


def from_bits(bits):
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


class Keystream:
    """One end of an encrypted link: XORs bits with a stream that advances bit
    by bit from the seed both ends agreed on (xorshift32, one byte per step).
    Two ends stay in step only while both see every frame."""

    def __init__(self, seed):
        self._x = (seed & 0xFFFFFFFF) or 1
        self._byte = 0
        self._left = 0
        self.pos = 0

    def xor(self, bits):
        out = []
        for b in bits:
            if not self._left:
                x = self._x
                x ^= (x << 13) & 0xFFFFFFFF
                x ^= x >> 17
                x ^= (x << 5) & 0xFFFFFFFF
                self._x = x
                self._byte = x & 0xFF
                self._left = 8
            out.append(b ^ (self._byte & 1))
            self._byte >>= 1
            self._left -= 1
        self.pos += len(bits)
        return out


def _nak(code):
    return [(code >> i) & 1 for i in range(4)]


def value_block(value, adr):
    v = value & 0xFFFFFFFF
    nv = v ^ 0xFFFFFFFF
    b = bytearray(16)
    for i in range(4):
        b[i] = (v >> (8 * i)) & 0xFF
        b[4 + i] = (nv >> (8 * i)) & 0xFF
        b[8 + i] = b[i]
    b[12] = adr & 0xFF
    b[13] = adr ^ 0xFF
    b[14] = adr & 0xFF
    b[15] = adr ^ 0xFF
    return bytes(b)


def _value_of(blk):
    """The signed value of a well-formed value block, or None."""
    for i in range(4):
        if blk[i] != blk[8 + i] or blk[i] != blk[4 + i] ^ 0xFF:
            return None
    if blk[12] != blk[14] or blk[13] != blk[15] or blk[12] != blk[13] ^ 0xFF:
        return None
    v = blk[0] | blk[1] << 8 | blk[2] << 16 | blk[3] << 24
    return v - (1 << 32) if v & 0x80000000 else v


class ClassicCard:
    """A MIFARE Classic card. size is 1024 (MF1S50) or 4096 (MF1S70)."""

    def __init__(self, uid, size=1024, blocks=None, name=None):
        uid = bytes(uid)
        if len(uid) not in (4, 7):
            raise ValueError("uid must be 4 or 7 bytes")
        if size not in (1024, 4096):
            raise ValueError("size must be 1024 or 4096")
        self.uid = uid
        self.size = size
        self.name = name or binascii.hexlify(uid).decode()
        self.nblocks = size // 16
        self.sak = 0x08 if size == 1024 else 0x18
        atqa0 = 0x04 if size == 1024 else 0x02
        self.atqa = bytes((atqa0 | (0x40 if len(uid) == 7 else 0), 0x00))
        if blocks is None:
            blocks = self._factory()
        self.blocks = [bytearray(b) for b in blocks]
        if len(self.blocks) != self.nblocks:
            raise ValueError("wrong block count")
        # timing: seconds-free integers, microseconds
        self.slow = 0      # 0: fastest card; 100: answers at the datasheet budget
        self.ops = 0       # frames answered (statistics)
        self.writes = 0    # EEPROM block writes
        self.power_off()

    # -- images ------------------------------------------------------------
    def _factory(self):
        blocks = [bytes(16)] * self.nblocks
        b0 = bytearray(16)
        u = self.uid
        if len(u) == 4:
            b0[0:4] = u
            b0[4] = u[0] ^ u[1] ^ u[2] ^ u[3]
            b0[5] = 0x08 if self.size == 1024 else 0x18
            b0[6:8] = b"\x04\x00" if self.size == 1024 else b"\x02\x00"
        else:
            b0[0:7] = u
            b0[7] = 0x08 if self.size == 1024 else 0x18
            b0[8:10] = b"\x44\x00" if self.size == 1024 else b"\x42\x00"
        b0[10:16] = b"SIMCRD"
        blocks[0] = bytes(b0)
        trailer = b"\xff" * 6 + b"\xff\x07\x80\x69" + b"\xff" * 6
        for s in range(self.sectors()):
            blocks[self.trailer_block(s)] = trailer
        return blocks

    def to_dict(self):
        return {
            "type": "mifare-classic-%dk" % (self.size // 1024),
            "uid": binascii.hexlify(self.uid).decode(),
            "blocks": [binascii.hexlify(bytes(b)).decode() for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, d):
        size = 1024 if d["type"].endswith("-1k") else 4096
        return cls(binascii.unhexlify(d["uid"]), size,
                   [binascii.unhexlify(h) for h in d["blocks"]])

    # json.dump/json.load stream the file: no 2-3 kB string of the whole image
    # at once, which would be the simulator's, not the meter's, largest
    # allocation and would set the heap the RAM bench finds (docs/BUILD.md)
    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def clone_to(self, uid=None):
        """A copy of this card's memory, on a card with `uid` (or the same UID:
        a 'magic' clone). Block 0 keeps the original manufacturer data, as a
        dump-and-write clone would on a UID-changeable card."""
        c = ClassicCard(uid or self.uid, self.size, [bytes(b) for b in self.blocks])
        if uid is not None:
            c.blocks[0] = bytearray(ClassicCard(uid, self.size).blocks[0])
        return c

    # -- geometry ----------------------------------------------------------
    def sectors(self):
        return 16 if self.size == 1024 else 40

    def sector_of(self, blk):
        return blk // 4 if blk < 128 else 32 + (blk - 128) // 16

    def first_block(self, sector):
        return sector * 4 if sector < 32 else 128 + (sector - 32) * 16

    def trailer_block(self, sector):
        return sector * 4 + 3 if sector < 32 else 128 + (sector - 32) * 16 + 15

    def _group(self, blk):
        s = self.sector_of(blk)
        if blk == self.trailer_block(s):
            return 3
        if s < 32:
            return blk - self.first_block(s)
        return (blk - self.first_block(s)) // 5

    def _conds(self, sector):
        """The four 3-bit access conditions, or None if the bits are malformed
        (the sector is then blocked for good)."""
        t = self.blocks[self.trailer_block(sector)]
        b6, b7, b8 = t[6], t[7], t[8]
        c1 = b7 >> 4
        c2 = b8 & 0x0F
        c3 = b8 >> 4
        if (b6 & 0x0F) != (c1 ^ 0x0F) or (b6 >> 4) != (c2 ^ 0x0F) or (b7 & 0x0F) != (c3 ^ 0x0F):
            return None
        return [((c1 >> i) & 1) << 2 | ((c2 >> i) & 1) << 1 | ((c3 >> i) & 1) for i in range(4)]

    def blocked(self, sector):
        return self._conds(sector) is None

    # -- power and state ---------------------------------------------------
    def power_off(self):
        self.state = IDLE
        self._halted = False
        self._level = 0
        self._auth_sector = -1
        self._key = 0
        self._await = None
        self._tbuf = None
        self._pending = None
        self.crypto = None     # Keystream while an encrypted session is up

    def tear(self):
        """The card lost power during the EEPROM write now in progress."""
        p = self._pending
        if p is not None:
            blk, old, new = p
            mix = bytearray(new[:7]) + bytearray(old[7:])
            mix[7] ^= 0x5A
            self.blocks[blk] = mix
        self.power_off()

    def _reset_to_idle(self):
        self.state = HALT if self._halted else IDLE
        self._level = 0
        self._auth_sector = -1
        self._key = 0
        self._await = None
        self.crypto = None

    def _cln(self, level):
        u = self.uid
        if len(u) == 4:
            c = u
        elif level == 0:
            c = bytes((0x88, u[0], u[1], u[2]))
        else:
            c = u[3:7]
        return bytes(c) + bytes((c[0] ^ c[1] ^ c[2] ^ c[3],))

    def auth_uid(self):
        """The 4 UID bytes that enter Crypto1: those of the last cascade level
        (uid[0:4] for a 4-byte UID, uid[3:7] for a 7-byte UID; NXP AN10927)."""
        return self.uid[-4:]

    # -- the air interface -------------------------------------------------
    def rf(self, bits):
        """Handle one PCD frame; return (response bits, processing_us) or None.
        While a session is up, what it hears is decrypted and what it answers
        encrypted with the session's keystream."""
        ks = self.crypto
        if ks is None:
            return self._frame(bits)
        out = self._frame(ks.xor(bits))
        if out is None:
            return None
        return ks.xor(out[0]), out[1]

    def _frame(self, bits):
        self._pending = None
        n = len(bits)
        if n == 7:
            cmd = from_bits(bits)[0]
            if cmd == 0x26 and self.state == IDLE or cmd == 0x52 and self.state in (IDLE, HALT):
                self._halted = self.state == HALT
                self.state = READY
                self._level = 0
                self.ops += 1
                return to_bits(self.atqa), FDT_US
            if self.state in (READY, ACTIVE):
                self._reset_to_idle()
            return None
        if self.state == IDLE or self.state == HALT:
            return None
        if self.state == READY:
            return self._anticoll(bits)
        # ACTIVE (possibly authenticated)
        if n % 8:
            self._reset_to_idle()
            return None
        data = from_bits(bits)
        if len(data) < 3 or crc_a(data, len(data) - 2) != (data[-2] | data[-1] << 8):
            if self._auth_sector >= 0:
                self._reset_to_idle()
                return _nak(NAK_CRC), FDT_US
            return None
        body = data[:-2]
        self.ops += 1
        if self._await is not None:
            return self._second_part(body)
        cmd = body[0]
        if cmd == 0x50 and len(body) == 2 and body[1] == 0:  # HLTA
            self._halted = True
            self._reset_to_idle()
            return None
        if len(body) != 2 or self._auth_sector < 0:
            self._reset_to_idle()
            return _nak(NAK_INVALID), FDT_US
        blk = body[1]
        if blk >= self.nblocks or self.sector_of(blk) != self._auth_sector:
            self._reset_to_idle()
            return _nak(NAK_INVALID), FDT_US
        if cmd == 0x30:
            out = self._read(blk)
            if out is None:
                return self._deny()
            return to_bits(with_crc(out)), self._t(FDT_US, 4500)
        if cmd == 0xA0:
            if not self._may_write(blk):
                return self._deny()
            self._await = (0xA0, blk)
            return _nak(ACK), self._t(FDT_US, 4500)
        if cmd in (0xC0, 0xC1, 0xC2):
            op = 2 if cmd == 0xC1 else 3
            if self._group(blk) == 3 or not self._allowed(blk, op):
                return self._deny()
            if _value_of(self.blocks[blk]) is None:
                return self._deny()
            self._await = (cmd, blk)
            return _nak(ACK), self._t(FDT_US, 4500)
        if cmd == 0xB0:
            if self._tbuf is None or self._group(blk) == 3 or not self._allowed(blk, 3):
                return self._deny()
            self._commit(blk, value_block(self._tbuf, self.blocks[blk][12]))
            return _nak(ACK), self._t(EEPROM_US, 9000)
        return self._deny()

    def _t(self, fast, budget):
        return fast + (budget - fast) * self.slow // 100 if budget > fast else fast

    def _deny(self):
        self._reset_to_idle()
        return _nak(NAK_INVALID), FDT_US

    def _anticoll(self, bits):
        sel = (0x93, 0x95, 0x97)[self._level]
        head = from_bits(bits[:16]) if len(bits) >= 16 else b""
        if len(head) < 2 or head[0] != sel:
            self._reset_to_idle()
            return None
        nvb = head[1]
        cln = self._cln(self._level)
        if nvb == 0x70:
            if len(bits) != 72:
                return None
            data = from_bits(bits)
            if crc_a(data, 7) != (data[7] | data[8] << 8) or data[2:7] != cln:
                return None
            cascade = len(self.uid) == 7 and self._level == 0
            sak = 0x04 if cascade else self.sak
            if cascade:
                self._level += 1
            else:
                self.state = ACTIVE
            self.ops += 1
            return to_bits(with_crc(bytes((sak,)))), FDT_US
        known = ((nvb >> 4) - 2) * 8 + (nvb & 0x0F)
        if known < 0 or known > 39 or len(bits) != 16 + known:
            return None
        mine = to_bits(cln)
        if bits[16:] != mine[:known]:
            return None  # not addressed: stays silent
        self.ops += 1
        return mine[known:], FDT_US

    def authenticate(self, cmd, blk, key, uid4, crypto=None):
        """MFAuthent: True when the card accepts; on failure it drops to IDLE/HALT.
        crypto: the card's end of the new session's Keystream (None: a
        transparent link, for an ideal reader)."""
        if self.state != ACTIVE or blk >= self.nblocks or cmd not in (0x60, 0x61):
            self._reset_to_idle()
            return False
        sector = self.sector_of(blk)
        t = self.blocks[self.trailer_block(sector)]
        ok = (bytes(uid4) == self.auth_uid() and self._conds(sector) is not None
              and bytes(key) == bytes(t[0:6] if cmd == 0x60 else t[10:16]))
        self.ops += 1
        if not ok:
            self._reset_to_idle()
            return False
        self._auth_sector = sector
        self._key = 1 if cmd == 0x60 else 2
        self.crypto = crypto
        return True

    # -- memory rules ------------------------------------------------------
    def _allowed(self, blk, op):
        conds = self._conds(self._auth_sector)
        if conds is None:
            return False
        if self._key == 2 and conds[3] in _KEYB_READABLE:
            return False
        return bool(_DATA[conds[self._group(blk)]][op] & self._key)

    def _trailer_ok(self, field):
        conds = self._conds(self._auth_sector)
        if conds is None:
            return False
        if self._key == 2 and conds[3] in _KEYB_READABLE:
            return False
        return bool(_TRAILER[conds[3]][field] & self._key)

    def _read(self, blk):
        if self._group(blk) != 3:
            return bytes(self.blocks[blk]) if self._allowed(blk, 0) else None
        t = self.blocks[blk]
        out = bytearray(16)
        if self._trailer_ok(1):
            out[6:10] = t[6:10]
        if self._trailer_ok(3):
            out[10:16] = t[10:16]
        return bytes(out)

    def _may_write(self, blk):
        if blk == 0:
            return False
        if self._group(blk) != 3:
            return self._allowed(blk, 1)
        return self._trailer_ok(0) or self._trailer_ok(2) or self._trailer_ok(4)

    def _commit(self, blk, data):
        self._pending = (blk, bytes(self.blocks[blk]), bytes(data))
        self.blocks[blk] = bytearray(data)
        self.writes += 1

    def _second_part(self, body):
        cmd, blk = self._await
        self._await = None
        if cmd == 0xA0:
            if len(body) != 16:
                return self._deny()
            if self._group(blk) == 3:
                t = bytearray(self.blocks[blk])
                if self._trailer_ok(0):
                    t[0:6] = body[0:6]
                if self._trailer_ok(2):
                    t[6:10] = body[6:10]
                if self._trailer_ok(4):
                    t[10:16] = body[10:16]
                self._commit(blk, t)
            else:
                self._commit(blk, body)
            return _nak(ACK), self._t(EEPROM_US, 9000)
        if len(body) != 4:
            return self._deny()
        operand = body[0] | body[1] << 8 | body[2] << 16 | body[3] << 24
        cur = _value_of(self.blocks[blk])
        if cur is None:
            return self._deny()
        if cmd == 0xC1:
            self._tbuf = cur + operand
        elif cmd == 0xC0:
            self._tbuf = cur - operand
        else:
            self._tbuf = cur
        return None  # success: the card does not answer the second part
