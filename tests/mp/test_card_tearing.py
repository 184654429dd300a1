# Exactly-once top-up under tearing and power cuts, with the real Meter.
#
# Tearing: the card is pulled between transfer k and k+1 of the tap, for every
# k of a complete top-up transaction. Power cut: the meter dies (its RAM is
# lost) at transfer k, and a new meter is built from its state directory.
# In every case the credit is applied exactly once, eventually, and the card's
# return record ends up saying so.
import codes
from mptest import fresh_dir
from test_card_rig import durable_rig, user_card, load_credit, card_status, R

TIMEOUT = 110
AMOUNT = 1000


class PowerCut(BaseException):
    """Not an Exception: nothing in the firmware may swallow it."""


def _newest(c, h):
    return R.newest_status(card_status(c, h))[1]


def _finish(hw, s, c):
    """Re-tap until the tap completes; returns the final code."""
    code = None
    for _ in range(4):
        hw.world.reader.remove()
        hw.world.reader.place(c)
        code = s.poll()
        if code in (codes.ACCEPTED, codes.USED):
            return code
    return code


def _count_transfers(m, hw, s, c, h, seq):
    load_credit(c, h, AMOUNT, seq)
    hw.world.reader.remove()
    t0 = hw.card_spi.transfers
    hw.world.reader.place(c)
    assert s.poll() == codes.ACCEPTED
    return hw.card_spi.transfers - t0


def test_card_pulled_at_every_transfer():
    m, hw, s = durable_rig(fresh_dir("tear"))
    c, h = user_card(amount=0)
    spi = hw.card_spi
    reader = hw.world.reader
    n = _count_transfers(m, hw, s, c, h, 1)
    assert n > 50
    seq = 1
    outcomes = {}
    for k in range(1, n + 1):
        seq += 1
        load_credit(c, h, AMOUNT, seq)
        reader.remove()
        b0 = m.balance
        start = spi.transfers

        def pull(count, start=start, k=k):
            if count == start + k:
                reader.remove()
        spi.on_transfer = pull
        reader.place(c)
        first = s.poll()
        spi.on_transfer = None
        outcomes[first] = outcomes.get(first, 0) + 1
        # a torn write never leaves both return-record copies invalid
        assert _newest(c, h) is not None, k
        assert m.balance in (b0, b0 + AMOUNT), k
        code = _finish(hw, s, c)
        assert code in (codes.ACCEPTED, codes.USED), (k, code)
        assert m.balance == b0 + AMOUNT, (k, m.balance - b0)
        assert _newest(c, h).credit_seq == seq, k
        # and once more: never twice
        assert _finish(hw, s, c) == codes.USED
        assert m.balance == b0 + AMOUNT
    # the tearing really hit every phase of the tap
    assert outcomes.get(codes.CARD_GONE, 0) + outcomes.get(codes.TIMEOUT, 0) > n // 2, outcomes
    assert s.lockout.fails(c.uid) == 0     # a torn tap is not an authentication failure


def test_power_cut_at_every_transfer():
    d = fresh_dir("cut")
    m, hw, s = durable_rig(d)
    c, h = user_card(amount=0)
    n = _count_transfers(m, hw, s, c, h, 1)
    seq = 1
    applied = 0
    for k in range(1, n + 1, 2):
        seq += 1
        load_credit(c, h, AMOUNT, seq)
        b0 = m.balance
        spi = hw.card_spi
        start = spi.transfers

        def cut(count, start=start, k=k):
            if count == start + k:
                raise PowerCut()
        spi.on_transfer = cut
        hw.world.reader.remove()
        hw.world.reader.place(c)
        try:
            s.poll()
        except PowerCut:
            pass
        spi.on_transfer = None
        # reboot: RAM is gone, the meter comes back from its state directory
        m, hw, s = durable_rig(d)
        assert m.balance in (b0, b0 + AMOUNT), k
        if m.balance == b0 + AMOUNT:
            applied += 1
        code = _finish(hw, s, c)
        assert code in (codes.ACCEPTED, codes.USED), (k, code)
        assert m.balance == b0 + AMOUNT, (k, m.balance - b0)
        assert _newest(c, h).credit_seq == seq, k
    # some cuts fell after the credit was made durable, some before
    assert 0 < applied < (n + 1) // 2


def test_power_cut_around_the_commit():
    """Cut just before and just after the meter's durable commit."""
    d = fresh_dir("commit")
    for when in ("before", "after"):
        m, hw, s = durable_rig(d)
        c, h = user_card(uid=b"\x41\x42\x43\x44" if when == "before" else b"\x45\x46\x47\x48",
                         amount=AMOUNT, seq=1, account=7 if when == "before" else 8)
        b0 = m.balance
        real = m.apply_credit

        def apply(source, account, seq, amount):
            if when == "before":
                raise PowerCut()
            real(source, account, seq, amount)
            raise PowerCut()
        m.apply_credit = apply
        hw.world.reader.place(c)
        try:
            s.poll()
        except PowerCut:
            pass
        m, hw, s = durable_rig(d)
        assert m.balance == (b0 if when == "before" else b0 + AMOUNT)
        hw.world.reader.place(c)
        assert s.poll() == (codes.ACCEPTED if when == "before" else codes.USED)
        assert m.balance == b0 + AMOUNT
