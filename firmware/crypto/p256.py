# ECDSA signature verification on NIST P-256 (SEC 2 secp256r1, FIPS 186-4
# appendix D.1.2.3), SHA-256, in plain MicroPython big ints: the stock ESP32
# firmware has no C module for it. Verify only: the meter never signs, so no
# secret goes through this code and constant time is not needed.
#
# Points are Jacobian (X, Y, Z): x = X/Z^2, y = Y/Z^3; Z == 0 is infinity.
# u1*G + u2*Q is one pass over the 256 bits (Shamir's trick) with a 2-bit
# joint window: 15 precomputed sums i*G + j*Q, 255 doublings and at most 128
# additions. Every intermediate is a short-lived int (heap churn, no growth).
# Cost: bench/bench_sig.py. Called only for rare operations (tariffs,
# office-signed cards and commands), never for a credit tap.
import hashlib

# Curve y^2 = x^3 - 3x + b over GF(p); G of prime order n.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_HALF_N = _N >> 1


def _inv(a, m):
    # Extended Euclid; a in [1, m-1] and m prime, so the inverse exists.
    # (Not pow(a, m-2, m): three-argument pow is optional in MicroPython.)
    x0, x1, r0, r1 = 0, 1, m, a
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        x0, x1 = x1, x0 - q * x1
    return x0 % m


def on_curve(x, y):
    """True if (x, y) is an affine point of the curve (not infinity)."""
    if not (0 <= x < _P and 0 <= y < _P):
        return False
    return (y * y - (x * x * x - 3 * x + _B)) % _P == 0


def _double(pt):
    # dbl-2001-b (a = -3): 3M + 5S.
    X, Y, Z = pt
    if Z == 0 or Y == 0:
        return (1, 1, 0)
    p = _P
    delta = Z * Z % p
    gamma = Y * Y % p
    beta = X * gamma % p
    alpha = 3 * (X - delta) * (X + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    Z3 = ((Y + Z) * (Y + Z) - gamma - delta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return (X3, Y3, Z3)


def _add(p1, p2):
    # add-1998-cmo-2, general Jacobian + Jacobian; the equal and opposite
    # cases (H == 0) are handled, since the window sums can meet them.
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    if Z1 == 0:
        return p2
    if Z2 == 0:
        return p1
    p = _P
    Z1Z1 = Z1 * Z1 % p
    Z2Z2 = Z2 * Z2 % p
    U1 = X1 * Z2Z2 % p
    U2 = X2 * Z1Z1 % p
    S1 = Y1 * Z2 * Z2Z2 % p
    S2 = Y2 * Z1 * Z1Z1 % p
    H = (U2 - U1) % p
    R = (S2 - S1) % p
    if H == 0:
        return _double(p1) if R == 0 else (1, 1, 0)
    HH = H * H % p
    HHH = H * HH % p
    V = U1 * HH % p
    X3 = (R * R - HHH - 2 * V) % p
    Y3 = (R * (V - X3) - S1 * HHH) % p
    Z3 = Z1 * Z2 * H % p
    return (X3, Y3, Z3)


def _shamir_steps(u1, u2, qx, qy, every=128):
    # table[4*i + j] = i*G + j*Q for i, j in 0..3 (index 0 is infinity).
    # Yields None after every `every` windows of 2 bits, then the sum.
    g = (_GX, _GY, 1)
    q = (qx, qy, 1)
    g2 = _double(g)
    q2 = _double(q)
    gs = ((1, 1, 0), g, g2, _add(g2, g))
    qs = ((1, 1, 0), q, q2, _add(q2, q))
    table = [_add(gs[i], qs[j]) for i in range(4) for j in range(4)]
    acc = (1, 1, 0)
    n = 0
    for shift in range(254, -1, -2):
        acc = _double(_double(acc))
        k = ((u1 >> shift) & 3) << 2 | ((u2 >> shift) & 3)
        if k:
            acc = _add(acc, table[k])
        n += 1
        if n % every == 0 and shift:
            yield None
    yield acc


def _shamir(u1, u2, qx, qy):
    for acc in _shamir_steps(u1, u2, qx, qy):
        pass
    return acc


def verify_steps(pub, digest, sig, every=128):
    """verify() in slices: a generator that yields None after every `every`
    of the 128 windows (each about 23 ms on an ESP32, bench/bench_sig.py),
    then yields the result, True or False. For callers that must give the
    loop back between slices (firmware/ota)."""
    if len(pub) != 64 or len(sig) != 64 or len(digest) != 32:
        yield False
        return
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (1 <= r < _N and 1 <= s <= _HALF_N):
        yield False
        return
    qx = int.from_bytes(pub[:32], "big")
    qy = int.from_bytes(pub[32:], "big")
    if not on_curve(qx, qy):
        yield False
        return
    # The digest is as long as n, so it is used whole (SEC 1 4.1.4 step 3).
    e = int.from_bytes(digest, "big")
    w = _inv(s, _N)
    for pt in _shamir_steps(e * w % _N, r * w % _N, qx, qy, every):
        if pt is None:
            yield None
    X, Y, Z = pt
    if Z == 0:
        yield False
        return
    zi = _inv(Z, _P)
    x = X * zi * zi % _P
    yield x % _N == r


def verify(pub, digest, sig):
    """ECDSA P-256 verify of a 32-byte digest.

    pub: 64 bytes x || y (big-endian), sig: 64 bytes r || s. False for any
    malformed or non-canonical input: r or s outside [1, n-1], s above n/2
    (the low-s rule: one valid signature per message), a key off the curve.
    """
    for ok in verify_steps(pub, digest, sig):
        pass
    return ok


def verify_msg(pub, msg, sig):
    """verify() over SHA-256(msg)."""
    return verify(pub, hashlib.sha256(msg).digest(), sig)
