# Card record layout and cryptography: one source for the meter (MicroPython)
# and the vending station (tools/cardtool.py, CPython 3.11). docs/CARD.md is
# the contract; the byte offsets below are normative.
#
# Uses only struct, hashlib (SHA-256) and AES-128 in the forward direction:
# cryptolib on MicroPython, `cryptography` on CPython when installed, else the
# small pure-Python AES below (CPython only; never used on the meter).
import struct
import hashlib

# result codes: the same numbers as firmware/codes.py (checked by a test)
OK = 0
USED = 1
FORMAT = 2
RANGE = 3
OLD = 4
SIGNATURE = 5
WRONG_METER = 7
WRONG_REGION = 8
KEY_EXPIRED = 9
UNKNOWN = 13
BLANK = 18
FOREIGN = 19
WRONG_ACCOUNT = 20
VOIDED = 21

MAGIC = 0x57          # 'W'
VERSION = 1

# record types
T_HEADER = 0x01
T_CREDIT = 0x02
# 0x03 was the region-keyed tariff record; 0x05 is the office-signed
# container of multi-meter cards (card/signed_card.py)
T_INSTALL = 0x04
T_STATUS = 0x10

# card types (header byte 4)
CARD_USER = 1
CARD_INSTALL = 2
CARD_TARIFF = 3
CARD_CHECK = 4
CARD_VALVE = 5
CARD_NAMES = {1: "user", 2: "install", 3: "tariff", 4: "check", 5: "valve-test"}

# credit flags
F_EMERGENCY = 0x01    # the customer asks for emergency credit

# sectors (same on 1K and 4K cards)
S_HEADER = 1          # blocks 4, 5: header (32 bytes); block 6 zero
S_PAYLOAD = 2         # blocks 8, 9, 10: credit / install record
S_STATUS_A = 3        # blocks 12, 13, 14: meter return record, copy A
S_STATUS_B = 4        # blocks 16, 17, 18: copy B
SECTORS_USED = (0, 1, 2, 3, 4)

# access conditions (C1C2C3 per block group, see card/mifare.py)
ACC_ISSUER = (4, 4, 4, 3)   # data: read A|B, write B only; trailer: keys/bits by B
ACC_METER = (0, 0, 0, 3)    # data: read/write A|B; trailer: keys/bits by B

MONEY_MAX = (1 << 40) - 1
MAC_LEN = 8


class RecordError(Exception):
    def __init__(self, code, why=""):
        super().__init__(why or "record error %d" % code)
        self.code = code


# -- primitives -----------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


from mac import hmac_sha256, equal  # noqa: E402,F401 - shared with comms; re-exported


def _aes_factory():
    try:
        import cryptolib
    except ImportError:
        # CPython (the vending station): `cryptography` if present, else pure AES
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ImportError:
            return _PureAES.encrypt_block

        def enc_c(key, block):
            e = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
            return e.update(bytes(block)) + e.finalize()
        return enc_c

    def enc(key, block):
        return cryptolib.aes(key, 1).encrypt(block)
    return enc


class _PureAES:
    """AES-128 forward cipher (FIPS-197), for CPython without `cryptography`."""
    _sbox = None

    @classmethod
    def _tables(cls):
        if cls._sbox is None:
            xt = cls._xt
            exp = [0] * 255
            log = [0] * 256
            x = 1
            for i in range(255):  # powers of the generator 3
                exp[i] = x
                log[x] = i
                x ^= xt(x)
            sbox = [0x63] * 256
            for a in range(1, 256):
                q = exp[(255 - log[a]) % 255]  # multiplicative inverse
                r = q
                for _ in range(4):
                    q = ((q << 1) | (q >> 7)) & 0xFF
                    r ^= q
                sbox[a] = r ^ 0x63
            cls._sbox = sbox
        return cls._sbox

    @staticmethod
    def _xt(a):
        return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1

    @classmethod
    def encrypt_block(cls, key, block):
        s = cls._tables()
        xt = cls._xt
        w = list(key)
        rcon = 1
        for i in range(4, 44):
            t = w[(i - 1) * 4: i * 4]
            if i % 4 == 0:
                t = [s[t[1]] ^ rcon, s[t[2]], s[t[3]], s[t[0]]]
                rcon = xt(rcon)
            w += [w[(i - 4) * 4 + j] ^ t[j] for j in range(4)]
        st = [block[i] ^ w[i] for i in range(16)]
        for rnd in range(1, 11):
            st = [s[b] for b in st]
            st = [st[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows
            if rnd != 10:
                out = []
                for c in range(4):
                    a = st[4 * c: 4 * c + 4]
                    t = a[0] ^ a[1] ^ a[2] ^ a[3]
                    out += [a[j] ^ t ^ xt(a[j] ^ a[(j + 1) % 4]) for j in range(4)]
                st = out
            st = [st[i] ^ w[rnd * 16 + i] for i in range(16)]
        return bytes(st)


aes_encrypt = _aes_factory()


# -- key derivation ---------------------------------------------------------

def derive(master, label, data=b""):
    return hmac_sha256(master, label + data)


def _mid(meter_id):
    """A meter ID as it sits on a card: 8 ASCII bytes, NUL padded."""
    if isinstance(meter_id, str):
        meter_id = meter_id.encode()
    if len(meter_id) > 8:
        raise RecordError(RANGE, "meter id longer than 8 bytes")
    return bytes(meter_id) + bytes(8 - len(meter_id))


def sector_key(master, which, uid, sector, rev):
    """Diversified MIFARE key (6 bytes): which is b"A" or b"B"."""
    return derive(master, b"MFK" + which, bytes((rev, sector)) + bytes(uid))[:6]


def meter_key(record_master, meter_id, rev):
    """The record key a meter is provisioned with (the issuer keeps the master)."""
    return derive(record_master, b"REC", bytes((rev,)) + _mid(meter_id))


def card_keys(record_key, uid):
    """(enc_key16, mac_key32) for one card."""
    return derive(record_key, b"ENC", bytes(uid))[:16], derive(record_key, b"MAC", bytes(uid))


def _mac(mac_key, uid, body):
    return hmac_sha256(mac_key, bytes(uid) + body)[:MAC_LEN]


def _keystream(enc_key, rtype, seq, uid):
    nonce = b"CR" + bytes((rtype, len(uid))) + struct.pack("<I", seq) + (bytes(uid) + bytes(8))[:8]
    return aes_encrypt(enc_key, nonce)


def _prefix(b, rtype):
    if len(b) < 4 or all(x == 0 for x in b):
        raise RecordError(BLANK, "blank")
    if b[0] != MAGIC or b[1] != VERSION:
        raise RecordError(FORMAT, "magic/version")
    if b[2] != rtype:
        raise RecordError(UNKNOWN if b[2] not in (1, 2, 4, 5, 0x10) else FORMAT, "record type")
    return b[3]


# -- header (sector 1, blocks 4-5) ------------------------------------------
# 0 magic | 1 version | 2 type=1 | 3 key_rev | 4 card_type | 5 flags |
# 6-7 region | 8-15 meter_id (ASCII, NUL padded; all zero for service cards) |
# 16-19 account | 20-23 card_no | 24-31 MAC

class Header:
    def __init__(self, card_type, region, meter_id, account, card_no, key_rev, flags=0):
        self.card_type = card_type
        self.region = region
        self.meter_id = meter_id
        self.account = account
        self.card_no = card_no
        self.key_rev = key_rev
        self.flags = flags


def pack_header(mac_key, uid, h):
    body = struct.pack("<BBBBBBH8sII", MAGIC, VERSION, T_HEADER, h.key_rev, h.card_type,
                       h.flags, h.region, _mid(h.meter_id), h.account, h.card_no)
    return body + _mac(mac_key, uid, body)


def peek_header(b):
    """Parse a header without checking its MAC (to choose the key)."""
    if len(b) != 32:
        raise RecordError(FORMAT, "header length")
    rev = _prefix(b, T_HEADER)
    (_, _, _, _, ctype, flags, region, mid, account, card_no) = struct.unpack("<BBBBBBH8sII", b[:24])
    mid = bytes(mid)
    while mid and mid[-1] == 0:
        mid = mid[:-1]
    if ctype not in CARD_NAMES:
        raise RecordError(UNKNOWN, "card type")
    return Header(ctype, region, mid.decode(), account, card_no, rev, flags)


def verify_header(b, mac_key, uid):
    h = peek_header(b)
    if not equal(_mac(mac_key, uid, bytes(b[:24])), b[24:32]):
        raise RecordError(SIGNATURE, "header MAC")
    return h


# -- credit (sector 2, blocks 8-9) ------------------------------------------
# 0-3 prefix (type 2) | 4-7 seq | 8-23 AES-CTR-style ciphertext of:
#   account u32 | region u16 | amount u40 | flags u8 | card_no u32
# 24-31 MAC over uid || bytes 0..23 (encrypt-then-MAC)

class Credit:
    def __init__(self, seq, account, region, amount, flags=0, card_no=0, key_rev=0):
        self.seq = seq
        self.account = account
        self.region = region
        self.amount = amount
        self.flags = flags
        self.card_no = card_no
        self.key_rev = key_rev


def _xor(a, b):
    return bytes(a[i] ^ b[i] for i in range(len(a)))


def pack_credit(keys, uid, c):
    enc_key, mac_key = keys
    if not 0 <= c.amount <= MONEY_MAX or not 0 <= c.seq < (1 << 32):
        raise RecordError(RANGE, "amount/seq")
    plain = struct.pack("<IHIBBI", c.account, c.region, c.amount & 0xFFFFFFFF,
                        c.amount >> 32, c.flags, c.card_no)
    head = struct.pack("<BBBBI", MAGIC, VERSION, T_CREDIT, c.key_rev, c.seq)
    body = head + _xor(plain, _keystream(enc_key, T_CREDIT, c.seq, uid))
    return body + _mac(mac_key, uid, body)


def unpack_credit(b, keys, uid):
    enc_key, mac_key = keys
    if len(b) != 32:
        raise RecordError(FORMAT, "credit length")
    rev = _prefix(b, T_CREDIT)
    b = bytes(b)
    if not equal(_mac(mac_key, uid, b[:24]), b[24:32]):
        raise RecordError(SIGNATURE, "credit MAC")
    seq = struct.unpack("<I", b[4:8])[0]
    plain = _xor(b[8:24], _keystream(enc_key, T_CREDIT, seq, uid))
    account, region, lo, hi, flags, card_no = struct.unpack("<IHIBBI", plain)
    return Credit(seq, account, region, lo | hi << 32, flags, card_no, rev)


# -- install (sector 2, blocks 8-10, 48 bytes): binds a meter to account and region
# 0-3 prefix (type 4) | 4-7 seq | 8-15 meter_id | 16-19 account | 20-21 region |
# 22-23 zero | 24-27 card credit floor of the account | 28-39 zero | 40-47 MAC

SEQ_MAX = 0xFFFFFFFF   # credit and installation sequences, accounts: u32, 1..SEQ_MAX


class Install:
    def __init__(self, seq, meter_id, account, region, card_floor=0):
        self.seq = seq
        self.meter_id = meter_id
        self.account = account
        self.region = region
        self.card_floor = card_floor


def pack_install(mac_key, uid, i, key_rev):
    if not (1 <= i.seq <= SEQ_MAX and 1 <= i.account <= SEQ_MAX and 0 <= i.card_floor <= SEQ_MAX
            and 0 <= i.region <= 0xFFFF):
        raise RecordError(RANGE, "install seq/account/floor/region")
    body = struct.pack("<BBBBI8sIHHI", MAGIC, VERSION, T_INSTALL, key_rev, i.seq,
                       _mid(i.meter_id), i.account, i.region, 0, i.card_floor) + bytes(12)
    return body + _mac(mac_key, uid, body)


def unpack_install(b, mac_key, uid):
    _prefix(b, T_INSTALL)
    b = bytes(b)
    if len(b) != 48 or not equal(_mac(mac_key, uid, b[:40]), b[40:48]):
        raise RecordError(SIGNATURE, "install MAC")
    _, _, _, _, seq, mid, account, region, _, floor = struct.unpack("<BBBBI8sIHHI", b[:28])
    return Install(seq, mid.rstrip(b"\x00").decode(), account, region, floor)


# -- meter return record (status), 48 bytes ---------------------------------
# 0-3 prefix (type 0x10) | 4-7 gen | 8-15 meter_id | 16-19 account |
# 20-23 seq of this card's credit record | 24-31 balance i64 (money units) |
# 32-35 volume (litres) | 36 alarms | 37 verdict on that credit (result code,
# NO_VERDICT if none) | 38-39 firmware version | 40-43 time (unix s) |
# 44-47 MAC: first 4 bytes of HMAC(mac_key, uid || 0..43)
# The meter's statement about this card's credit: ACCEPTED/USED means it was
# applied, which the office may rely on; nothing on a card proves that a
# credit was NOT applied (an older record can be put back), docs/CARD.md §6.

STATUS_MAC = 4
NO_VERDICT = 0xFF


class Status:
    def __init__(self, gen, meter_id, account, credit_seq, verdict, balance, volume_l, alarms,
                 fw, time):
        self.gen = gen
        self.meter_id = meter_id
        self.account = account
        self.credit_seq = credit_seq
        self.verdict = verdict
        self.balance = balance
        self.volume_l = volume_l
        self.alarms = alarms
        self.fw = fw
        self.time = time


_STATUS = "<BBBBI8sIIqIBBHI"


def pack_status(mac_key, uid, s, key_rev):
    body = struct.pack(_STATUS, MAGIC, VERSION, T_STATUS, key_rev, s.gen,
                       _mid(s.meter_id), s.account, s.credit_seq, s.balance,
                       s.volume_l & 0xFFFFFFFF, s.alarms & 0xFF, s.verdict & 0xFF, s.fw & 0xFFFF,
                       s.time)
    return body + hmac_sha256(mac_key, bytes(uid) + body)[:STATUS_MAC]


def unpack_status(b, mac_key, uid):
    """The status record, or None when it is blank, torn or forged."""
    b = bytes(b)
    if len(b) != 48 or b[0] != MAGIC or b[1] != VERSION or b[2] != T_STATUS:
        return None
    if not equal(hmac_sha256(mac_key, bytes(uid) + b[:44])[:STATUS_MAC], b[44:48]):
        return None
    f = struct.unpack(_STATUS, b[:44])
    return Status(f[4], f[5].rstrip(b"\x00").decode(), f[6], f[7], f[11], f[8], f[9], f[10],
                  f[12], f[13])


def newest_status(copies):
    """(index, Status) of the valid copy with the highest gen, or (-1, None)."""
    best = -1
    st = None
    for i, s in enumerate(copies):
        if s is not None and (st is None or s.gen > st.gen):
            best, st = i, s
    return best, st


# -- what the vending station writes ----------------------------------------

# (multi-meter cards: card/signed_card.py)

def sector_trailer(issuer, uid, sector, meter_id):
    from card.mifare import access_bytes, trailer
    acc = ACC_ISSUER if sector in (0, S_HEADER, S_PAYLOAD) else ACC_METER
    return trailer(issuer.key_a(uid, sector, meter_id), access_bytes(*acc),
                   issuer.key_b(uid, sector))


def _blocks(first, data):
    out = []
    for i in range(0, len(data), 16):
        out.append((first + i // 16, bytes(data[i:i + 16])))
    return out


def plan_issue(issuer, uid, h, payload=None):
    """[(block, 16 bytes)] to personalise a user or install card: data
    first, trailers last. payload is the packed sector-2 record (credit or
    install) or None."""
    if h.card_type not in (CARD_USER, CARD_INSTALL):
        raise RecordError(FORMAT, "multi-meter cards are office-signed (signed_card.py)")
    uid = bytes(uid)
    keys = card_keys(issuer.meter_key(h.meter_id), uid)
    plan = _blocks(4, pack_header(keys[1], uid, h) + bytes(16))
    plan += _blocks(8, (payload or b"") + bytes(48 - len(payload or b"")))
    slots = (S_STATUS_A, S_STATUS_B)
    for s in slots:
        plan += _blocks(s * 4, bytes(48))
    plan += _blocks(1, bytes(32))
    for s in (0, S_HEADER, S_PAYLOAD) + slots:
        plan.append((s * 4 + 3, sector_trailer(issuer, uid, s, h.meter_id)))
    return plan


def plan_credit(issuer, uid, h, credit):
    """[(block, data)] to load a new credit record onto an issued user card."""
    keys = card_keys(issuer.meter_key(h.meter_id), bytes(uid))
    credit.key_rev = issuer.rev
    return _blocks(8, pack_credit(keys, bytes(uid), credit))
