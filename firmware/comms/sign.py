# HMAC-SHA256 (RFC 2104) on hashlib, which every port has; the ESP32 port has
# no hmac module. Keys are derived per meter and per region from master keys.
#
# Plain Python on purpose (no const()): tools/headend.py imports this very
# file under CPython, so the meter and the head-end sign the same way.
import hashlib

_BLOCK = 64


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


def meter_key(master, meter_id):
    """Key that signs the commands of one meter."""
    return derive(master, "meter/" + meter_id)


def region_key(master, region):
    """Key that signs the tariff broadcasts of one region."""
    return derive(master, "region/%d" % region)


def mqtt_password(master, meter_id):
    """The meter's broker password (32 hex digits)."""
    return "".join("%02x" % b for b in derive(master, "mqtt/" + meter_id)[:16])


def equal(a, b):
    """Compare MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for x, y in zip(a, b):
        d |= x ^ y
    return d == 0
