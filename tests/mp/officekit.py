# The office's side, for MicroPython tests: ECDSA P-256 signing with the
# public test office key (authority._TEST_PUB; refused outside test builds).
# Signing here uses the verifier's own curve arithmetic, which is checked
# against the `cryptography` package by test_p256.py; the nonce is derived
# from the key and the digest, so tests are deterministic.
import hashlib
import json
from binascii import hexlify

import authority
from crypto import p256

TEST_D = int.from_bytes(hashlib.sha256(b"wm1 test office key").digest(), "big") % p256._N


def _mul_g(k):
    X, Y, Z = p256._shamir(k, 0, p256._GX, p256._GY)
    zi = p256._inv(Z, p256._P)
    return X * zi * zi % p256._P, Y * zi * zi * zi % p256._P


def public(d=TEST_D):
    x, y = _mul_g(d)
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def sign_digest(digest, d=TEST_D):
    n = p256._N
    e = int.from_bytes(digest, "big")
    k = int.from_bytes(hashlib.sha256(d.to_bytes(32, "big") + digest).digest(), "big") % n or 1
    r = _mul_g(k)[0] % n
    s = p256._inv(k, n) * (e + r * d) % n
    if s > n // 2:
        s = n - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(purpose, payload, d=TEST_D):
    return sign_digest(authority.digest(purpose, payload), d)


def keys(*ds, min_rev=1):
    """authority.Keys with the test key as revision 1 (or ds as 1, 2, ...)."""
    ds = ds or (TEST_D,)
    return authority.Keys({i + 1: public(d) for i, d in enumerate(ds)}, min_rev)


def secrets(*ds):
    """The "office" part of secrets.json for these keys."""
    ds = ds or (TEST_D,)
    return {"office": {str(i + 1): hexlify(public(d)).decode() for i, d in enumerate(ds)},
            "office_min_rev": 1}


def doc(**fields):
    return json.dumps(fields).encode()


def message(purpose, body, d=TEST_D):
    """body | 128 hex signature: a region tariff or fleet command on MQTT."""
    return body + b"|" + hexlify(sign(purpose, body, d))
