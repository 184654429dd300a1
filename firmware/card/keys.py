# Card key material. Importable by MicroPython (the meter) and CPython (the
# vending station). See docs/CARD.md, "Keys".
#
# Issuer (vending office) masters, 16 bytes each, per key revision:
#   MR  record master: each meter's card secret derives from it
#   MB  key B master: key B of every card (the office's write key)
# A meter is provisioned with its own card secret only (which gives key A
# and the record keys of its user and install cards, diversified by card
# UID). It never holds MR or MB, nor any key shared with another meter:
# multi-meter cards (tariff, check, valve-test) are office-signed and their
# key A is public (card/signed_card.py). So a dump of one meter reads and
# writes no other meter's cards.
from card import records as R

# Test masters: public, so they are refused unless the build says "test".
_TEST = (b"TEST-MB-00000000", b"TEST-MR-00000000")


def _unhex(s):
    import binascii
    return binascii.unhexlify(s) if isinstance(s, str) else bytes(s)


class IssuerKeys:
    """What the vending station holds (for one key revision). Host only."""

    def __init__(self, mb, mr, rev=1, allow_test=False):
        mb, mr = _unhex(mb), _unhex(mr)
        if not allow_test and (mb, mr) == _TEST:
            raise ValueError("test issuer keys refused outside a test build")
        if len(mb) < 16 or len(mr) < 16:
            raise ValueError("issuer masters must be >= 16 bytes")
        self.mb, self.mr, self.rev = mb, mr, rev

    def key_a(self, uid, sector, meter_id):
        """Key A of a sector of one meter's user or install card."""
        return R.sector_key(self.meter_key(meter_id), b"A", uid, sector, self.rev)

    def key_b(self, uid, sector):
        return R.sector_key(self.mb, b"B", uid, sector, self.rev)

    def meter_key(self, meter_id):
        """The meter's card secret (its whole card authority)."""
        return R.meter_key(self.mr, meter_id, self.rev)

    def meter_secrets(self, meter_id, min_rev=0):
        """The card part of a meter's provisioning file."""
        import binascii
        d = {"rev": self.rev, "rec": binascii.hexlify(self.meter_key(meter_id)).decode()}
        if min_rev:
            d["min_rev"] = min_rev
        return d


def testing_issuer(rev=1):
    return IssuerKeys(_TEST[0], _TEST[1], rev, allow_test=True)


class MeterKeys:
    """What a meter holds: its own card secret per key revision, and
    min_rev, below which a revision is retired (a card of it answers
    KEY_EXPIRED)."""

    def __init__(self, revs, min_rev=0, allow_test=False, meter_id=None):
        # revs: {rev: meter_card_secret}; with meter_id, a secret derived
        # from the public test master is refused outside a test build
        self.revs = {}
        for rev, rec in revs.items():
            rec = _unhex(rec)
            if meter_id is not None and not allow_test and rec == R.meter_key(_TEST[1], meter_id, rev):
                raise ValueError("test card keys refused outside a test build")
            self.revs[rev] = rec
        self.min_rev = min_rev
        newest_first = sorted(self.revs, reverse=True)
        self.order = [r for r in newest_first if r >= min_rev]     # revisions that open cards
        self.retired = [r for r in newest_first if r < min_rev]    # known, only to say KEY_EXPIRED

    @classmethod
    def from_secrets(cls, d, allow_test=False, meter_id=None):
        """From provisioning: {"rev", "rec"[, "min_rev"]} or a list of them.
        min_rev is the highest one given: retiring a revision in any entry
        retires it, whatever the other entries say."""
        items = d if isinstance(d, list) else [d]
        return cls({x["rev"]: x["rec"] for x in items},
                   max(x.get("min_rev", 0) for x in items), allow_test, meter_id)

    def accepts(self, rev):
        return rev in self.revs and rev >= self.min_rev

    def key_a(self, uid, sector, rev):
        """Key A of this meter's own user and install cards."""
        return R.sector_key(self.revs[rev], b"A", uid, sector, rev)

    def record_key(self, rev):
        return self.revs[rev]


def testing_meter_keys(meter_id, rev=1, min_rev=0):
    return MeterKeys({rev: testing_issuer(rev).meter_key(meter_id)}, min_rev, allow_test=True)
