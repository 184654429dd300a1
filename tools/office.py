"""The office's signing key (host side, CPython): ECDSA P-256 over SHA-256,
in the format firmware/authority.py verifies (docs/PROTOCOL.md §4.7). The
private key lives only on the head-end and the vending office; meters get
the public key (64 bytes x || y) in secrets.json.

    key = OfficeKey.generate(rev=1)      # or OfficeKey.load(path)
    key.save(path)                       # PEM, mode 0600, with the revision
    sig = key.sign(b"tariff", payload)   # 64 bytes r || s, low s
    secrets.update(office_secrets([key]))
"""

import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DOMAIN = b"wm1/"
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The public test office key (firmware/authority.py refuses it outside a
# test build): for the simulator and the tests only.
TEST_D = int.from_bytes(hashlib.sha256(b"wm1 test office key").digest(), "big") % N


def message(purpose: bytes, payload: bytes) -> bytes:
    """What is signed: the domain, the purpose tag and the payload."""
    if b"/" in purpose:
        raise ValueError("purpose must not contain '/'")
    return DOMAIN + purpose + b"/" + payload


def raw_signature(der: bytes) -> bytes:
    """DER ECDSA signature -> 64 bytes r || s with s <= n/2 (the meter
    refuses the other, equally valid, s: one signature per message)."""
    r, s = decode_dss_signature(der)
    if s > N // 2:
        s = N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_bytes(pub: ec.EllipticCurvePublicKey) -> bytes:
    n = pub.public_numbers()
    return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


class OfficeKey:
    def __init__(self, private: ec.EllipticCurvePrivateKey, rev: int = 1):
        if not isinstance(private.curve, ec.SECP256R1):
            raise TypeError("office key must be P-256")
        self.private, self.rev = private, rev

    @classmethod
    def generate(cls, rev: int = 1) -> "OfficeKey":
        return cls(ec.generate_private_key(ec.SECP256R1()), rev)

    @classmethod
    def testing(cls) -> "OfficeKey":
        return cls(ec.derive_private_key(TEST_D, ec.SECP256R1()), 1)

    @classmethod
    def load(cls, path) -> "OfficeKey":
        p = Path(path)
        meta = json.loads(p.with_suffix(".json").read_text()) if p.with_suffix(".json").exists() else {}
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        return cls(key, int(meta.get("rev", 1)))

    def save(self, path) -> None:
        p = Path(path)
        pem = self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        p.with_suffix(".json").write_text(json.dumps({"rev": self.rev}))

    def public(self) -> bytes:
        return public_bytes(self.private.public_key())

    def sign(self, purpose: bytes, payload: bytes) -> bytes:
        der = self.private.sign(message(purpose, payload), ec.ECDSA(hashes.SHA256()))
        return raw_signature(der)


def office_secrets(keys, min_rev: int = 1) -> dict:
    """The meter's part: public keys per revision (secrets.json)."""
    return {"office": {str(k.rev): k.public().hex() for k in keys}, "office_min_rev": min_rev}


if __name__ == "__main__":
    from libscript import not_a_command
    not_a_command(__doc__, "from office import OfficeKey  (tools/headend.py and tools/cardtool.py hold the office key)")
