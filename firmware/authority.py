# The office's authority over more than one meter: region tariffs, tariff
# cards, multi-meter cards and fleet commands are signed by the office with
# an ECDSA P-256 private key that never leaves the head-end; a meter holds
# only the public keys, so a dump of one meter signs nothing.
#
# Signed message: SHA-256 over  b"wm1/" + purpose + b"/" + payload
# (docs/PROTOCOL.md §4.7). The purpose tag ("tariff", "card",
# "fleet", ...) keeps a signature made for one use from being replayed as
# another; it never contains "/", so the split is unambiguous.
#
# Key revisions: secrets.json holds {"office": {"<rev>": "<hex x||y>", ...},
# "office_min_rev": r}. Revisions below min_rev are retired and never tried.
import hashlib

from crypto import p256

_DOMAIN = b"wm1/"
# The test office key: its private scalar is SHA-256(b"wm1 test office key")
# mod n, public in the tests, so a meter refuses it outside a test build.
_TEST_PUB = ("9c970ff8546c5997db1f52370a4fdb443dd04353155222ab21401a3f809f55dc"
             "18d89e248a6809066ee193b220243215ef3cbebef3d71058416d38370363d6c6")


class Keys:
    """The office public keys a meter accepts, newest revision first."""

    def __init__(self, revs, min_rev=1):
        self.min_rev = min_rev
        self.revs = {}
        for rev, pub in revs.items():
            if len(pub) != 64 or not p256.on_curve(int.from_bytes(pub[:32], "big"),
                                                     int.from_bytes(pub[32:], "big")):
                raise ValueError("office key rev %d is not a P-256 point" % rev)
            self.revs[rev] = pub

    def active(self):
        return [r for r in sorted(self.revs, reverse=True) if r >= self.min_rev]

    def retire_below(self, rev):
        """Raise min_rev (never lowers it). True if it changed."""
        if rev > self.min_rev:
            self.min_rev = rev
            return True
        return False


def load(secrets, allow_test=False):
    """Keys from the provisioning secrets, or None when the meter has no
    office key (it then refuses everything that needs one). Malformed
    entries, and the test key outside a test build, raise ValueError, so
    bad provisioning is seen at boot."""
    d = secrets.get("office")
    if not d:
        return None
    import binascii
    try:
        revs = {int(k): binascii.unhexlify(v) for k, v in d.items()}
        min_rev = int(secrets.get("office_min_rev", 1))
    except (AttributeError, TypeError, ValueError):
        raise ValueError("office keys: want {\"<rev>\": \"<128 hex>\"}")
    if not allow_test and binascii.unhexlify(_TEST_PUB) in revs.values():
        raise ValueError("test office key refused outside a test build")
    return Keys(revs, min_rev)


def digest(purpose, payload):
    if b"/" in purpose:
        raise ValueError("purpose must not contain '/'")
    h = hashlib.sha256(_DOMAIN)
    h.update(purpose)
    h.update(b"/")
    h.update(payload)
    return h.digest()


def signer(keys, purpose, payload, sig):
    """The revision of the active office key that signed payload for
    purpose, or 0 if none did (also for no keys or a malformed sig)."""
    if keys is None or len(sig) != 64:
        return 0
    d = digest(purpose, payload)
    for rev in keys.active():
        if p256.verify(keys.revs[rev], d, sig):
            return rev
    return 0


def verify(keys, purpose, payload, sig):
    return signer(keys, purpose, payload, sig) != 0


def signer_steps(keys, purpose, payload, sig, every):
    """signer() in slices (p256.verify_steps): yields None between slices,
    then the revision, or 0."""
    if keys is None or len(sig) != 64:
        yield 0
        return
    d = digest(purpose, payload)
    for rev in keys.active():
        for ok in p256.verify_steps(keys.revs[rev], d, sig, every):
            if ok is None:
                yield None
        if ok:
            yield rev
            return
    yield 0
