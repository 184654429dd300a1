# HMAC-SHA256 (RFC 2104) on hashlib, which every port has; the ESP32 port has
# no hmac module. One implementation for cards (card/records.py) and MQTT
# (comms/sign.py). Plain Python on purpose (no const()): the host tools
# import this very file under CPython, so meter, vending station and
# head-end compute the same MACs.
import hashlib

_BLOCK = 64


def hmac_sha256(key, msg):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """Compare MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
