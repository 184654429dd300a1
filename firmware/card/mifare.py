# MIFARE Classic operations on top of the MFRC522 driver, and the pure
# helpers (geometry, access bits, value blocks) that tools/cardtool.py shares.
# Importable by CPython 3.11 as well as MicroPython: nothing here needs const().
#
# Access bits (MF1S50 section 8.7): for block group i (0..2 data, 3 trailer)
# three bits C1i C2i C3i, written as cond = C1<<2 | C2<<1 | C3. They sit in
# trailer bytes 6..8 with their inverses:
#   byte 6 = ~C2[3..0] << 4 | ~C1[3..0]
#   byte 7 =  C1[3..0] << 4 | ~C3[3..0]
#   byte 8 =  C3[3..0] << 4 |  C2[3..0]
# A trailer whose inverses do not match blocks the sector for ever, so
# write_trailer() refuses to send one.

TRANSPORT_KEY = b"\xff" * 6
TRANSPORT_ACCESS = b"\xff\x07\x80"


def access_bytes(c0, c1, c2, c3):
    """Trailer bytes 6..8 for the four conditions (each 0..7, C1C2C3)."""
    cs = (c0, c1, c2, c3)
    b1 = b2 = b3 = 0
    for i in range(4):
        c = cs[i]
        if not 0 <= c <= 7:
            raise ValueError("access condition")
        b1 |= ((c >> 2) & 1) << i
        b2 |= ((c >> 1) & 1) << i
        b3 |= (c & 1) << i
    return bytes((((b2 ^ 0xF) << 4) | (b1 ^ 0xF), (b1 << 4) | (b3 ^ 0xF), (b3 << 4) | b2))


def access_conditions(ab):
    """(c0, c1, c2, c3) from trailer bytes 6..8, or None if malformed."""
    b6, b7, b8 = ab[0], ab[1], ab[2]
    b1 = b7 >> 4
    b2 = b8 & 0x0F
    b3 = b8 >> 4
    if (b6 & 0x0F) != b1 ^ 0x0F or (b6 >> 4) != b2 ^ 0x0F or (b7 & 0x0F) != b3 ^ 0x0F:
        return None
    return tuple(((b1 >> i) & 1) << 2 | ((b2 >> i) & 1) << 1 | ((b3 >> i) & 1) for i in range(4))


def trailer(key_a, access3, key_b, gpb=0x69):
    if len(key_a) != 6 or len(key_b) != 6 or access_conditions(access3) is None:
        raise ValueError("bad trailer")
    return bytes(key_a) + bytes(access3) + bytes((gpb,)) + bytes(key_b)


def value_encode(value, adr):
    v = value & 0xFFFFFFFF
    out = bytearray(16)
    for i in range(4):
        b = (v >> (8 * i)) & 0xFF
        out[i] = b
        out[4 + i] = b ^ 0xFF
        out[8 + i] = b
    out[12] = adr & 0xFF
    out[13] = (adr & 0xFF) ^ 0xFF
    out[14] = adr & 0xFF
    out[15] = (adr & 0xFF) ^ 0xFF
    return bytes(out)


def value_decode(blk):
    """(value, adr) of a well-formed value block, else None."""
    for i in range(4):
        if blk[i] != blk[8 + i] or blk[i] != blk[4 + i] ^ 0xFF:
            return None
    if blk[12] != blk[14] or blk[13] != blk[15] or blk[12] != blk[13] ^ 0xFF:
        return None
    v = blk[0] | blk[1] << 8 | blk[2] << 16 | blk[3] << 24
    if v & 0x80000000:
        v -= 1 << 32
    return v, blk[12]


def sector_of(block):
    return block // 4 if block < 128 else 32 + (block - 128) // 16


def first_block(sector):
    return sector * 4 if sector < 32 else 128 + (sector - 32) * 16


def trailer_block(sector):
    return sector * 4 + 3 if sector < 32 else 128 + (sector - 32) * 16 + 15


def is_trailer(block):
    return block == trailer_block(sector_of(block))


class Classic:
    """A selected MIFARE Classic card behind an MFRC522 (or any reader with
    request/select/auth/read/write/increment/decrement/restore/transfer/halt)."""

    def __init__(self, reader):
        self.r = reader
        self._sector = -1
        self._buf = bytearray(16)

    def connect(self, wake=True):
        """Wake/request and select. Returns the UID as bytes, or None."""
        self._sector = -1
        # a card still ACTIVE ignores the first REQA/WUPA and drops to IDLE
        # (ISO/IEC 14443-3 state machine): ask twice
        if not self.r.request(wake) and not self.r.request(wake):
            return None
        n = self.r.select()
        return bytes(self.r.uid[:n])

    def uid(self):
        return bytes(self.r.uid[: self.r.uid_len])

    def auth(self, sector, key, key_b=False):
        """Authenticate once per sector and key (nested auth when switching)."""
        tag = sector * 2 + (1 if key_b else 0)
        if tag == self._sector:
            return
        self._sector = -1
        self.r.auth(trailer_block(sector), key, key_b)
        self._sector = tag

    def read(self, block, into=None):
        buf = into if into is not None else self._buf
        try:
            self.r.read(block, buf)
        except Exception:
            self._sector = -1
            raise
        return buf

    def write(self, block, data):
        if len(data) != 16:
            raise ValueError("a block is 16 bytes")
        if block == 0:
            raise ValueError("block 0 is the manufacturer block")
        if is_trailer(block) and access_conditions(data[6:9]) is None:
            raise ValueError("malformed access bits would block the sector")
        try:
            self.r.write(block, data)
        except Exception:
            self._sector = -1
            raise

    def read_value(self, block):
        v = value_decode(self.read(block))
        if v is None:
            raise ValueError("not a value block")
        return v[0]

    def write_value(self, block, value):
        self.write(block, value_encode(value, block))

    def increment(self, block, delta, to=None):
        self.r.increment(block, delta)
        self.r.transfer(block if to is None else to)

    def decrement(self, block, delta, to=None):
        self.r.decrement(block, delta)
        self.r.transfer(block if to is None else to)

    def copy_value(self, src, dst):
        self.r.restore(src)
        self.r.transfer(dst)

    def halt(self):
        self._sector = -1
        try:
            self.r.halt()
        except Exception:
            pass
