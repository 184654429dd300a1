# Card key material. Importable by MicroPython (the meter) and CPython (the
# vending station). See docs/CARD.md, "Keys".
#
# Issuer (vending office) masters, 16 bytes each, per key revision:
#   MR  record master: each meter's card secret derives from it
#   MB  key B master: key B of every card (the office's write key)
#   MA  service-card key A master: key A of multi-meter cards only
#       (tariff, check, valve-test), whose content the office signs
# A meter is provisioned with its own card secret (which gives key A and the
# record keys of its user and install cards, diversified by card UID), MA
# and its region's record key. It never holds MR or MB, so a dump of one
# meter reads and writes no other meter's user or install cards.
from card import records as R

# Test masters: public, so they are refused unless the build says "test".
_TEST = (b"TEST-MA-00000000", b"TEST-MB-00000000", b"TEST-MR-00000000")


def _unhex(s):
    import binascii
    return binascii.unhexlify(s) if isinstance(s, str) else bytes(s)


class IssuerKeys:
    """What the vending station holds (for one key revision). Host only."""

    def __init__(self, ma, mb, mr, rev=1, allow_test=False):
        ma, mb, mr = _unhex(ma), _unhex(mb), _unhex(mr)
        if not allow_test and (ma, mb, mr) == _TEST:
            raise ValueError("test issuer keys refused outside a test build")
        if len(ma) < 16 or len(mb) < 16 or len(mr) < 16:
            raise ValueError("issuer masters must be >= 16 bytes")
        self.ma, self.mb, self.mr, self.rev = ma, mb, mr, rev

    def key_a(self, uid, sector, meter_id=""):
        """Key A of a sector: per meter for user and install cards (meter_id
        given), from MA for multi-meter cards (meter_id empty)."""
        if meter_id:
            return R.sector_key(self.meter_key(meter_id), b"A", uid, sector, self.rev)
        return R.sector_key(self.ma, b"A", uid, sector, self.rev)

    def key_b(self, uid, sector):
        return R.sector_key(self.mb, b"B", uid, sector, self.rev)

    def meter_key(self, meter_id):
        """The meter's card secret (its whole card authority)."""
        return R.meter_key(self.mr, meter_id, self.rev)

    def region_key(self, region):
        return R.region_key(self.mr, region, self.rev)

    def meter_secrets(self, meter_id, region, min_rev=0):
        """The card part of a meter's provisioning file."""
        import binascii

        def h(b):
            return binascii.hexlify(b).decode()
        d = {"rev": self.rev, "ma": h(self.ma), "rec": h(self.meter_key(meter_id)),
             "reg": h(self.region_key(region))}
        if min_rev:
            d["min_rev"] = min_rev
        return d


def testing_issuer(rev=1):
    return IssuerKeys(_TEST[0], _TEST[1], _TEST[2], rev, allow_test=True)


class MeterKeys:
    """What a meter holds: per key revision, MA (multi-meter cards), its own
    card secret and its region's record key; and min_rev, below which a
    revision is retired (a card of it answers KEY_EXPIRED)."""

    def __init__(self, revs, min_rev=0, allow_test=False):
        # revs: {rev: (ma, meter_card_secret, region_record_key)}
        self.revs = {}
        for rev, (ma, rec, reg) in revs.items():
            ma = _unhex(ma)
            if ma == _TEST[0] and not allow_test:
                raise ValueError("test card keys refused outside a test build")
            self.revs[rev] = (ma, _unhex(rec), _unhex(reg))
        self.min_rev = min_rev
        newest_first = sorted(self.revs, reverse=True)
        self.order = [r for r in newest_first if r >= min_rev]     # revisions that open cards
        self.retired = [r for r in newest_first if r < min_rev]    # known, only to say KEY_EXPIRED

    @classmethod
    def from_secrets(cls, d, allow_test=False):
        """From provisioning: {"rev", "ma", "rec", "reg"[, "min_rev"]} or a
        list of them. min_rev is the highest one given: retiring a revision
        in any entry retires it, whatever the other entries say."""
        items = d if isinstance(d, list) else [d]
        return cls({x["rev"]: (x["ma"], x["rec"], x["reg"]) for x in items},
                   max(x.get("min_rev", 0) for x in items), allow_test)

    def accepts(self, rev):
        return rev in self.revs and rev >= self.min_rev

    def key_a(self, uid, sector, rev):
        """Key A of this meter's own user and install cards."""
        return R.sector_key(self.revs[rev][1], b"A", uid, sector, rev)

    def service_key_a(self, uid, sector, rev):
        """Key A of multi-meter cards (tariff, check, valve-test)."""
        return R.sector_key(self.revs[rev][0], b"A", uid, sector, rev)

    def record_key(self, rev):
        return self.revs[rev][1]

    def region_key(self, rev):
        return self.revs[rev][2]


def testing_meter_keys(meter_id, region, rev=1, min_rev=0):
    i = testing_issuer(rev)
    return MeterKeys({rev: (i.ma, i.meter_key(meter_id), i.region_key(region))}, min_rev,
                     allow_test=True)
