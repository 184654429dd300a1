# Shared rig for the card tests (no tests here): a SimClock, a SimSPI bus at
# the board's card SPI clock, the MFRC522 model on CS pin "card_cs", and the
# driver on top.
from boards.unix.clock import SimClock
from boards.unix.spi import SimSPI
from boards.unix.pins import SimPin
from boards.unix.mfrc522_model import MFRC522Model
from boards.unix.mifare_card import ClassicCard
from card.mfrc522 import MFRC522

SPI_HZ = 4_000_000  # boards/unix SPI_BAUD


class Rig:
    def __init__(self, baud=SPI_HZ):
        self.clock = SimClock()
        self.spi = SimSPI(1, baud, self.clock)
        self.cs = SimPin("card_cs", SimPin.OUT, value=1)
        self.model = MFRC522Model(self.clock)
        self.spi.attach(self.cs, self.model)
        self.rc = MFRC522(self.spi, self.cs, clock=self.clock)

    def mark(self):
        return (self.spi.transfers, self.spi.bytes, self.clock.now_us())

    def since(self, m):
        return (self.spi.transfers - m[0], self.spi.bytes - m[1], self.clock.now_us() - m[2])


def card(uid=b"\x11\x22\x33\x44", size=1024):
    return ClassicCard(uid, size)


UID7 = b"\x04\x5a\x6b\x7c\x8d\x9e\x80"
FF = b"\xff" * 6


# -- issuing cards the way the vending station does (tools/cardtool.py) ------
from card import records as R
from card.keys import testing_issuer, testing_meter_keys
from card.session import Session

ISSUER = testing_issuer()


def apply_plan(c, plan):
    for blk, data in plan:
        c.blocks[blk] = bytearray(data)


def user_header(meter_id="M000001", region=1, account=42, card_no=7, ctype=R.CARD_USER):
    return R.Header(ctype, region, meter_id, account, card_no, ISSUER.rev)


def user_card(uid=b"\x11\x22\x33\x44", amount=1_000_000, seq=1, size=1024, flags=0, **kw):
    h = user_header(**kw)
    c = ClassicCard(uid, size)
    apply_plan(c, R.plan_issue(ISSUER, uid, h))
    if amount or flags:
        load_credit(c, h, amount, seq, flags)
    return c, h


def load_credit(c, h, amount, seq, flags=0):
    cr = R.Credit(seq, h.account, h.region, amount, flags, h.card_no)
    apply_plan(c, R.plan_credit(ISSUER, c.uid, h, cr))


def signed_card(ctype, doc, uid=b"\x51\x52\x53\x54", size=1024, d=None):
    """A multi-meter card as the office issues it: the document signed with
    the test office key (or the key d), card/signed_card.py layout."""
    import json
    import officekit
    from card import signed_card as SC
    body = json.dumps(doc).encode()
    sig = officekit.sign(SC.purpose(ctype), body, d or officekit.TEST_D)
    c = ClassicCard(uid, size)
    apply_plan(c, SC.plan_issue(ISSUER, uid, ctype, body, sig))
    return c


def card_status(c, h, meter_id=None):
    """The newest valid return record on a user card (office view)."""
    key = ISSUER.meter_key(meter_id or h.meter_id)
    mac = R.card_keys(key, c.uid)[1]
    copies = []
    for s in (R.S_STATUS_A, R.S_STATUS_B):
        b = b"".join(bytes(c.blocks[s * 4 + i]) for i in range(3))
        copies.append(R.unpack_status(b, mac, c.uid))
    return copies


def meter_rig(state_dir=None, **cfg):
    """(meter, hw, session): a real Meter, with the test office key."""
    import officekit
    from simkit import make_meter
    m, hw = make_meter(state_dir=state_dir, **cfg)
    m.attach_office(officekit.keys())
    rc = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock)
    keys = testing_meter_keys(m.cfg["meter_id"])
    return m, hw, Session(rc, m, keys, hw.clock)


def tap(hw, s, c):
    """Place the card, run one poll, leave the card on the reader."""
    hw.world.reader.place(c)
    return s.poll()


class _Litres:
    def ml(self):
        return 0


class FakeMeter:
    """The meter's card-facing surface, for unit tests of the session: the
    real Ledger, a balance, an event list, a 'durable' dict."""

    def __init__(self, meter_id="M000001", region=1):
        from ledger import Ledger
        self.cfg = {"meter_id": meter_id, "region": region}
        self.ledger = Ledger()
        self.balance = 0
        self.events = []
        self.tariffs = []
        self.applied = []
        self.low_level = 0
        self.want_open = True
        self.volume = _Litres()
        self.installs = []
        self.emergencies = 0

    def apply_credit(self, source, account, seq, amount):
        import codes
        code = self.ledger.check(source, account, seq)
        if code != codes.ACCEPTED:
            return code
        self.balance += amount
        self.ledger.record(source, account, seq)
        self.applied.append((source, account, seq, amount))
        return codes.ACCEPTED

    def install(self, account, region, seq, card_floor=0):
        import codes
        self.installs.append((account, region, seq, card_floor))
        return codes.ACCEPTED

    def grant_emergency(self):
        import codes
        self.emergencies += 1
        return codes.ACCEPTED

    def stage_tariff(self, d):
        self.tariffs.append(d)
        return 0

    def event(self, code, arg=0):
        self.events.append((code, arg))


def fake_rig(**kw):
    r = Rig()
    m = FakeMeter(**kw)
    keys = testing_meter_keys(m.cfg["meter_id"])
    r.meter = m
    r.session = Session(r.rc, m, keys, r.clock)
    return r


def rig_tap(r, c):
    r.model.place(c)
    return r.session.poll()


class FileMeter(FakeMeter):
    """Development stand-in for the real Meter with durable state in a file
    (used only when CARD_FAKE_METER=1 is set; the tests use the real Meter)."""

    def __init__(self, state_dir, **kw):
        FakeMeter.__init__(self, **kw)
        import json
        from ledger import Ledger
        self.path = state_dir + "/cardfake.json"
        try:
            with open(self.path) as f:
                d = json.load(f)
            self.balance = d["b"]
            self.ledger = Ledger(d["l"])
        except OSError:
            pass

    def apply_credit(self, source, account, seq, amount):
        import json
        import codes
        code = FakeMeter.apply_credit(self, source, account, seq, amount)
        if code != codes.ACCEPTED:
            return code
        with open(self.path, "w") as f:
            json.dump({"b": self.balance, "l": self.ledger.to_state()}, f)
        return codes.ACCEPTED


def durable_rig(state_dir):
    """(meter, hw-like, session) whose credits survive a rebuild from state_dir."""
    import os
    if os.getenv("CARD_FAKE_METER") != "1":
        return meter_rig(state_dir)
    r = Rig()
    m = FileMeter(state_dir)
    s = Session(r.rc, m, testing_meter_keys(m.cfg["meter_id"]), r.clock)

    class HW:
        pass
    hw = HW()
    hw.card_spi = r.spi
    hw.clock = r.clock

    class W:
        pass
    hw.world = W()
    hw.world.reader = r.model
    return m, hw, s
