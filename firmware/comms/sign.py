# HMAC-SHA256 (RFC 2104) on hashlib, which every port has; the ESP32 port has
# no hmac module. Keys are derived per meter and per region from master keys.
import hashlib

_BLOCK = const(64)


def hmac_sha256(key, msg):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def derive(master, label):
    """A per-meter or per-region key: HMAC(master, label)."""
    return hmac_sha256(master, label.encode() if isinstance(label, str) else label)


def equal(a, b):
    """Compare MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for x, y in zip(a, b):
        d |= x ^ y
    return d == 0
