"""Writes tests/fixtures/p256_vectors.json: ECDSA P-256 verify cases made by
the `cryptography` package (an implementation independent of the meter's
firmware/crypto/p256.py), for tests/mp/test_p256.py.

    .venv/bin/python tools/sig_vectors.py [OUT]

Each case: pub (hex x||y), msg (hex), sig (hex r||s), ok (the meter's
expected verdict), why; "msg" is hashed with SHA-256 by the verifier. And
"authority": office keys and signed (purpose, payload) cases for authority.py.
"""

import argparse
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parent))
from office import N, OfficeKey, message, public_bytes

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "p256_vectors.json"


def rs(r, s):
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def flip(b, i):
    b = bytearray(b)
    b[i // 8] ^= 1 << (i % 8)
    return bytes(b)


def cases():
    out = []

    def add(pub, msg, sig, ok, why):
        out.append({"pub": pub.hex(), "msg": msg.hex(), "sig": sig.hex(), "ok": ok, "why": why})

    keys = [OfficeKey.generate() for _ in range(3)]
    msgs = [b"", b"abc", bytes(range(256)), message(b"tariff", b"v=7")]
    high_done = low_done = False
    for k in keys:
        for m in msgs:
            der = k.private.sign(m, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            low = min(s, N - s)
            add(k.public(), m, rs(r, low), True, "valid (low s)")
            # the same signature with the other s: valid ECDSA, refused by the low-s rule
            add(k.public(), m, rs(r, N - low), False, "high s")
            high_done |= s > N // 2
            low_done |= s <= N // 2
    assert high_done and low_done, "want signatures from both halves (rerun)"
    k, other = keys[0], keys[1]
    m = b"price=0 version=2147483647"
    sig = k.sign(b"x", m)   # over message(b"x", m); tests below sign m itself
    good = _low(k.private.sign(m, ec.ECDSA(hashes.SHA256())))
    r, s = int.from_bytes(good[:32], "big"), int.from_bytes(good[32:], "big")
    add(k.public(), m, good, True, "valid")
    add(other.public(), m, good, False, "wrong key")
    add(k.public(), flip(m, 3), good, False, "flipped message bit")
    add(k.public(), m, flip(good, 5), False, "flipped bit in r")
    add(k.public(), m, flip(good, 300), False, "flipped bit in s")
    add(k.public(), m, sig, False, "signature of another message")
    add(k.public(), m, rs(0, s), False, "r = 0")
    add(k.public(), m, rs(r, 0), False, "s = 0")
    add(k.public(), m, rs(N, s), False, "r = n")
    add(k.public(), m, rs(r, N), False, "s = n")
    add(k.public(), m, rs(r, 2 ** 256 - 1), False, "s >= n")
    pub = k.public()
    x, y = int.from_bytes(pub[:32], "big"), int.from_bytes(pub[32:], "big")
    add(rs(x, (y + 1) % P), m, good, False, "key off the curve")
    add(rs(P, y), m, good, False, "key x = p")
    add(bytes(64), m, good, False, "key (0, 0)")
    add(rs(x, P - y), m, good, False, "negated key (on the curve, wrong)")
    add(pub, m, good[:63], False, "short signature")
    add(pub[:63], m, good, False, "short key")
    # a key from public_numbers, to check the x||y byte order both ways
    pk = ec.generate_private_key(ec.SECP256R1())
    add(public_bytes(pk.public_key()), m, _low(pk.sign(m, ec.ECDSA(hashes.SHA256()))),
        True, "valid, fresh key")
    return out


def _low(der):
    r, s = decode_dss_signature(der)
    return rs(r, min(s, N - s))


def authority_cases():
    """Office keys of revisions 1 and 2 and signatures over (purpose, payload)
    for firmware/authority.py; "rev" is the expected signer (0: refused)."""
    k1, k2, stranger = OfficeKey.generate(1), OfficeKey.generate(2), OfficeKey.generate(3)
    pay = b'{"v":8,"b":[[0,1500]]}'
    cases = []

    def add(key, purpose, check_as, rev, why):
        cases.append({"purpose": check_as.decode(), "payload": pay.hex(),
                      "sig": key.sign(purpose, pay).hex(), "rev": rev, "why": why})

    add(k1, b"tariff", b"tariff", 1, "rev 1 signs a tariff")
    add(k2, b"tariff", b"tariff", 2, "rev 2 signs a tariff")
    add(k1, b"card", b"tariff", 0, "a card signature is not a tariff signature")
    add(stranger, b"tariff", b"tariff", 0, "a key the meter does not hold")
    return {"office": {"1": k1.public().hex(), "2": k2.public().hex()}, "cases": cases}


def main():
    ap = argparse.ArgumentParser(prog="sig_vectors.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(OUT),
                    help="where to write (tests/fixtures/p256_vectors.json: fresh keys, a new file each run)")
    out = Path(ap.parse_args().out)
    out.write_text(json.dumps({"p256": cases(), "authority": authority_cases()}, indent=0) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
