# Card key material. Importable by MicroPython (the meter) and CPython (the
# vending station). See docs/CARD.md, "Keys".
#
# Issuer (vending office) masters, 16 bytes each, per key revision:
#   MA  diversifies key A of every sector of every card (readers: meters, office)
#   MB  diversifies key B (writers: the office only)
#   MR  record master: meter record keys and region record keys derive from it
# A meter is provisioned with MA, its own meter record key and its region's
# record key; it never holds MB or MR.
from card import records as R

# Test masters: public, so they are refused unless the build says "test".
_TEST = (b"TEST-MA-00000000", b"TEST-MB-00000000", b"TEST-MR-00000000")


def _unhex(s):
    import binascii
    return binascii.unhexlify(s) if isinstance(s, str) else bytes(s)


class IssuerKeys:
    """What the vending station holds (for one key revision)."""

    def __init__(self, ma, mb, mr, rev=1, allow_test=False):
        ma, mb, mr = _unhex(ma), _unhex(mb), _unhex(mr)
        if not allow_test and (ma, mb, mr) == _TEST:
            raise ValueError("test issuer keys refused outside a test build")
        if len(ma) < 16 or len(mb) < 16 or len(mr) < 16:
            raise ValueError("issuer masters must be >= 16 bytes")
        self.ma, self.mb, self.mr, self.rev = ma, mb, mr, rev

    def key_a(self, uid, sector):
        return R.sector_key(self.ma, b"A", uid, sector, self.rev)

    def key_b(self, uid, sector):
        return R.sector_key(self.mb, b"B", uid, sector, self.rev)

    def meter_key(self, meter_id):
        return R.meter_key(self.mr, meter_id, self.rev)

    def region_key(self, region):
        return R.region_key(self.mr, region, self.rev)

    def meter_secrets(self, meter_id, region):
        """The card part of a meter's provisioning file."""
        import binascii

        def h(b):
            return binascii.hexlify(b).decode()
        return {"rev": self.rev, "ma": h(self.ma), "rec": h(self.meter_key(meter_id)),
                "reg": h(self.region_key(region))}


def testing_issuer(rev=1):
    return IssuerKeys(_TEST[0], _TEST[1], _TEST[2], rev, allow_test=True)


class MeterKeys:
    """What a meter holds: per accepted key revision, MA and its two record keys."""

    def __init__(self, revs, min_rev=0, allow_test=False):
        # revs: {rev: (ma, meter_record_key, region_record_key)}
        self.revs = {}
        for rev, (ma, rec, reg) in revs.items():
            ma = _unhex(ma)
            if ma == _TEST[0] and not allow_test:
                raise ValueError("test card keys refused outside a test build")
            self.revs[rev] = (ma, _unhex(rec), _unhex(reg))
        self.min_rev = min_rev
        self.order = sorted(self.revs, reverse=True)  # newest first

    @classmethod
    def from_secrets(cls, d, allow_test=False):
        """From provisioning: {"rev", "ma", "rec", "reg"} or a list of them."""
        items = d if isinstance(d, list) else [d]
        return cls({x["rev"]: (x["ma"], x["rec"], x["reg"]) for x in items},
                   min(x.get("min_rev", 0) for x in items), allow_test)

    def accepts(self, rev):
        return rev in self.revs and rev >= self.min_rev

    def key_a(self, uid, sector, rev):
        return R.sector_key(self.revs[rev][0], b"A", uid, sector, rev)

    def record_key(self, rev):
        return self.revs[rev][1]

    def region_key(self, rev):
        return self.revs[rev][2]


def testing_meter_keys(meter_id, region, rev=1):
    i = testing_issuer(rev)
    return MeterKeys({rev: (i.ma, i.meter_key(meter_id), i.region_key(region))}, allow_test=True)
