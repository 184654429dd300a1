# The service PIN at rest: PBKDF2-HMAC-SHA256 (RFC 8018) with a per-meter
# random salt, sized so one guess costs about a second on the meter's CPU
# (bench/bench_pin.py). A PIN is 6-12 digits, so a flash dump still lets an
# attacker with a PC search it; the KDF makes that hours to years instead of
# seconds, and the salt makes every meter a search of its own. The PIN only
# unlocks guarded commands on a REPL that the office already opened
# (techaccess.py); it is not what keeps the REPL closed.
#
# Stored as "pbkdf2-sha256$<rounds>$<hex of 32 bytes>" in secrets.json
# (svc_pin) with svc_salt (hex); tools/flash.py provision writes both with
# CPython's hashlib.pbkdf2_hmac, which gives the same bytes.
import hashlib

ROUNDS = 3000           # at most about 0.8 s a guess, projected for a 240 MHz ESP32
SCHEME = "pbkdf2-sha256"


def pbkdf2_sha256(password, salt, rounds):
    """The first (and only needed) 32-byte block of PBKDF2-HMAC-SHA256."""
    if len(password) > 64:
        password = hashlib.sha256(password).digest()
    key = bytes(password) + bytes(64 - len(password))
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)

    def prf(msg):
        inner = hashlib.sha256(ipad)
        inner.update(msg)
        outer = hashlib.sha256(opad)
        outer.update(inner.digest())
        return outer.digest()

    u = prf(salt + b"\x00\x00\x00\x01")
    acc = int.from_bytes(u, "big")
    for _ in range(rounds - 1):
        u = prf(u)
        acc ^= int.from_bytes(u, "big")
    return acc.to_bytes(32, "big")


def check(stored, salt_hex, pin):
    """True if pin matches the stored record; False for a wrong PIN; None
    for a record this firmware does not accept (the old single SHA-256, or
    damage): re-provision the PIN."""
    import binascii
    parts = stored.split("$") if isinstance(stored, str) else ()
    if len(parts) != 3 or parts[0] != SCHEME or not isinstance(salt_hex, str):
        return None
    try:
        rounds = int(parts[1])
        want = binascii.unhexlify(parts[2])
        salt = binascii.unhexlify(salt_hex)
    except ValueError:
        return None
    if not 1000 <= rounds <= 1_000_000 or len(want) != 32 or len(salt) < 8:
        return None
    got = pbkdf2_sha256(str(pin).encode(), salt, rounds)
    d = 0
    for i in range(32):
        d |= got[i] ^ want[i]
    return d == 0


def record(salt, pin, rounds=ROUNDS):
    """The stored form of pin (the meter's tests; the office uses hashlib)."""
    import binascii
    dk = pbkdf2_sha256(str(pin).encode(), salt, rounds)
    return "%s$%d$%s" % (SCHEME, rounds, binascii.hexlify(dk).decode())
