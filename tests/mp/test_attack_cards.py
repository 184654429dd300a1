# Attacks on the card path, the keys and the credit ledger (docs/SECURITY.md,
# "Cards, keys and the credit ledger"). Each runs against the real Meter on
# the simulated board, with cards issued the way the vending office issues
# them, and fails if the attack succeeds.
import os

import boards
import codes
import config
import main
from mptest import fresh_dir
from simkit import make_cfg
from storage.state import StateStore
from test_card_rig import ISSUER, R, ClassicCard, apply_plan, load_credit, user_card
from card import mfrc522
from card.keys import MeterKeys, testing_issuer, testing_meter_keys
from card.session import Session
from card import lockout as L

METER = "M000001"


class Site:
    """One meter in one home: its state directory survives reboots."""

    def __init__(self, d=None, keys=None, **cfg):
        self.d = d or fresh_dir("atk")
        self.cfg = make_cfg(**cfg)
        self.keys = keys or testing_meter_keys(METER)
        self.boot()

    def boot(self):
        """Power-up: board, meter and card session built again from flash."""
        self.hw = boards.load("unix").build(state_dir=self.d)
        self.m = main.assemble(self.hw, dict(self.cfg))
        rc = mfrc522.MFRC522(self.hw.card_spi, self.hw.card_cs, self.hw.card_rst, self.hw.clock)
        self.s = Session(rc, self.m, self.keys, self.hw.clock,
                         lock_store=StateStore(self.d, "cardlock"))

    def tap(self, card):
        r = self.hw.world.reader
        r.remove()
        r.place(card)
        code = self.s.poll()
        r.remove()
        return code

    def wait_s(self, seconds):
        self.hw.clock.advance(seconds * 1000)


def install_card(seq, account, uid, region=1, card_floor=0):
    h = R.Header(R.CARD_INSTALL, region, METER, account, 1, ISSUER.rev)
    key = R.card_keys(ISSUER.meter_key(METER), uid)[1]
    c = ClassicCard(uid)
    apply_plan(c, R.plan_issue(ISSUER, uid, h, R.pack_install(
        key, uid, R.Install(seq, METER, account, region, card_floor), ISSUER.rev)))
    return c


def _uid(n):
    return bytes((0x30, n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF))


def _junk(n):
    c = ClassicCard(_uid(0x8000 + n))
    c.blocks[7] = bytearray(b"\x12" * 6 + b"\xff\x07\x80\x69" + b"\x34" * 6)
    return c


def test_attack_replay_after_total_state_loss():
    site = Site()
    c, h = user_card(amount=2_000_000, seq=1)
    assert site.tap(c) == codes.ACCEPTED
    dump = [bytes(b) for b in c.blocks]              # the card as it was before ...
    # ... both state copies destroyed (the flash is the customer's)
    for name in os.listdir(site.d):
        if name.startswith("state."):
            os.remove(site.d + "/" + name)
    site.boot()
    for i, b in enumerate(dump):
        c.blocks[i] = bytearray(b)
    assert site.tap(c) == codes.REFUSED              # no ledger: no credit until the floor
    assert site.m.void_credit("card", 42, 1) == codes.REFUSED   # nor a "not applied" verdict
    assert site.m.balance <= 0
    # the head-end's signed floor, bound to this loss by the meter's nonce
    rn = site.m.snapshot()["rn"]
    assert rn and site.m.restore_floors(42, 0, 0, 0, rn ^ 1) == codes.OLD
    assert site.m.restore_floors(42, 1, 0, 0, rn) == codes.ACCEPTED
    assert site.tap(c) == codes.OLD                  # settled before the loss: never again
    assert site.m.balance <= 0
    load_credit(c, h, 500_000, 2)                    # the office's next credit works
    assert site.tap(c) == codes.ACCEPTED


def test_attack_replacement_meter_with_the_same_id_refuses_old_cards():
    # a card bought and used on the old meter; the replacement is provisioned
    # with the old meter's binding (docs/CARD.md §5.3)
    old = Site()
    c, h = user_card(amount=1_000_000, seq=1)
    assert old.tap(c) == codes.ACCEPTED
    d = fresh_dir("repl")
    config.save(d, dict(make_cfg(account=42, install_seq=1)))
    new = Site(d, account=42, install_seq=1)
    assert new.tap(c) == codes.REFUSED
    assert new.m.balance <= 0
    assert new.m.restore_floors(42, 1, 0, 1, new.m.snapshot()["rn"]) == codes.ACCEPTED
    assert new.tap(c) == codes.OLD


def test_attack_junk_cards_do_not_lock_out_the_paying_customer():
    site = Site()
    good, h = user_card(amount=100_000, seq=1)
    junk = [_junk(i) for i in range(40)]              # cards no key of ours opens
    for j in junk[:10]:
        assert site.tap(j) == codes.FOREIGN
    seq = 1
    for hour in range(24):
        for j in junk[10 + hour % 30: 11 + hour % 30] + junk[:1]:
            assert site.tap(j) in (codes.FOREIGN, codes.LOCKED_OUT)
        assert site.tap(good) == codes.ACCEPTED, hour
        seq += 1
        load_credit(good, h, 100_000, seq)
        site.wait_s(3600)
    assert site.m.balance > 0


def _forge(card):
    # the attacker recovered the card's keys (Crypto1) and writes guesses
    card.blocks[9][15] = (card.blocks[9][15] + 1) & 0xFF


def test_attack_forged_mac_guessing_is_bounded_across_uids_and_power_cuts():
    site = Site()
    genuine, h = user_card(amount=1000, seq=1)
    assert site.tap(genuine) == codes.ACCEPTED
    forged, _ = user_card(amount=10 ** 9, seq=2)
    guesses = 0
    for i in range(600):                              # one tap every 6 s for an hour
        _forge(forged)
        if site.tap(forged) == codes.SIGNATURE:
            guesses += 1
        if i % 2:                                     # a genuine tap resets nothing
            assert site.tap(genuine) in (codes.USED, codes.LOCKED_OUT)   # (its UID is the guesser's)
        if i % 100 == 99:
            site.boot()                               # nor does a power cut
        site.wait_s(6)
    assert guesses <= L.LOCK_AFTER + 6, guesses       # 3 free, then 30 s, 1 min, ... 16 min
    # a UID-changing (magic) card carrying the dump: key A is diversified by
    # UID from the meter's secret, so on any other UID nothing opens and no
    # MAC is ever checked; its failures fill the table, then share one entry
    results = {}
    for n in range(200):
        c = forged.clone_to(_uid(1000 + n))
        code = site.tap(c)
        results[code] = results.get(code, 0) + 1
        site.wait_s(6)
    assert set(results) <= {codes.FOREIGN, codes.LOCKED_OUT}, results
    assert results.get(codes.FOREIGN, 0) <= 8 * L.LOCK_AFTER + 10, results
    assert site.tap(genuine) == codes.USED            # the customer's card still reads
    assert site.m.balance <= 1000


def test_attack_retired_key_revision_is_refused():
    i2 = testing_issuer(2)
    secrets = [ISSUER.meter_secrets(METER), i2.meter_secrets(METER, min_rev=2)]
    keys = MeterKeys.from_secrets(secrets, allow_test=True)
    assert keys.min_rev == 2
    site = Site(keys=keys)
    old, _ = user_card(amount=1_000_000, seq=1)       # issued under revision 1
    assert site.tap(old) == codes.KEY_EXPIRED
    assert site.m.balance <= 0


def test_attack_credit_of_another_account_after_a_new_tenant():
    site = Site()
    prev, h = user_card(amount=1_000_000, seq=5, account=41)   # the previous tenant's card
    assert site.tap(install_card(1, 42, b"\x71\x72\x73\x74")) == codes.ACCEPTED
    assert site.tap(prev) == codes.WRONG_ACCOUNT
    assert site.m.apply_credit("mqtt", 41, 9, 1_000_000) == codes.WRONG_ACCOUNT
    assert site.m.balance <= 0
    mine, _ = user_card(uid=b"\x21\x22\x23\x24", amount=1000, seq=1, account=42)
    assert site.tap(mine) == codes.ACCEPTED


def test_attack_previous_tenants_install_card_after_factory_reset():
    import service
    from boards.ticker import ManualTicker
    site = Site()
    a = install_card(1, 41, b"\x71\x72\x73\x01")
    b = install_card(3_000_000_000, 42, b"\x71\x72\x73\x02")   # any u32 sequence is kept
    assert site.tap(a) == codes.ACCEPTED
    assert site.tap(b) == codes.ACCEPTED
    s = service.attach(site.m, site.hw, None, "test", ManualTicker())
    service._p = lambda *x: None
    service.factory_reset(METER)
    assert (site.m.cfg["account"], site.m.cfg["install_seq"]) == (42, 3_000_000_000)
    s.ticker.stop()
    site.cfg = config.load(site.d)                    # reboot with what is on flash
    site.boot()
    assert site.tap(a) == codes.OLD
    assert site.m.cfg["account"] == 42


def test_attack_many_tenants_never_lock_the_ledger_nor_reopen_old_keys():
    site = Site()
    cards = {}
    for t in range(1, 25):                            # 24 tenants, one after the other
        uid = _uid(t)
        assert site.tap(install_card(t, 100 + t, b"\x72" + uid[1:])) == codes.ACCEPTED, t
        c, h = user_card(uid=uid, amount=1000, seq=1, account=100 + t)
        dump = [bytes(b) for b in c.blocks]
        assert site.tap(c) == codes.ACCEPTED, t
        cards[t] = dump
    assert site.m.balance == 24 * 1000
    # the previous tenant's credit: refused by the binding
    c = ClassicCard(_uid(23))
    c.blocks = [bytearray(b) for b in cards[23]]
    assert site.tap(c) == codes.WRONG_ACCOUNT
    # tenant 1 comes back: the installation card carries the office's floor
    assert site.tap(install_card(25, 101, b"\x73\x00\x00\x01", card_floor=1)) == codes.ACCEPTED
    c = ClassicCard(_uid(1))
    c.blocks = [bytearray(b) for b in cards[1]]
    assert site.tap(c) == codes.OLD
    assert site.m.balance == 24 * 1000


def test_attack_late_paid_credit_is_applied_not_lost():
    site = Site()
    drawer, hd = user_card(uid=b"\x41\x42\x43\x44", amount=700_000, seq=1)   # bought, forgotten
    daily, h = user_card(uid=b"\x51\x52\x53\x55", amount=1000, seq=2)
    for seq in range(2, 34):                          # 32 purchases on the other card
        load_credit(daily, h, 1000, seq)
        code = site.tap(daily)
        assert code in (codes.ACCEPTED, codes.RANGE), seq
    # the 32nd waits (RANGE: the window never slides over the unsettled seq 1)
    assert site.tap(drawer) == codes.ACCEPTED         # 32 purchases late, still applied
    assert site.tap(daily) in (codes.ACCEPTED, codes.USED)
    assert site.m.balance == 32 * 1000 + 700_000


def test_attack_refund_of_a_credit_already_used():
    # the customer asks for a refund of a credit: the office asks the meter
    # (void), whose answer is the verdict, never the card
    site = Site()
    c, h = user_card(amount=300_000, seq=1)
    assert site.tap(c) == codes.ACCEPTED
    assert site.m.void_credit("card", 42, 1) == codes.USED           # applied: no refund
    load_credit(c, h, 300_000, 2)
    dump = [bytes(b) for b in c.blocks]
    assert site.m.void_credit("card", 42, 2) == codes.ACCEPTED       # not applied: refund ...
    c.blocks = [bytearray(b) for b in dump]
    assert site.tap(c) == codes.VOIDED                              # ... and it never applies
    assert site.m.void_credit("card", 42, 2) == codes.ACCEPTED       # asked again: the same
    assert site.m.balance <= 300_000


def test_install_sequence_and_account_ranges_agree_everywhere():
    # the meter's state and config, the card record and the command fields:
    # one u32 range, so no stored sequence is dropped at a reboot
    from mptest import raises
    assert config.RANGES["install_seq"] == config.RANGES["account"] == (0, R.SEQ_MAX)
    key = R.card_keys(ISSUER.meter_key(METER), b"\x01\x02\x03\x04")[1]
    raises(R.RecordError, R.pack_install, key, b"\x01\x02\x03\x04",
           R.Install(R.SEQ_MAX + 1, METER, 42, 1), 1)
    site = Site()
    assert site.m.install(42, 1, R.SEQ_MAX + 1) == codes.RANGE
    assert site.tap(install_card(R.SEQ_MAX, 42, b"\x71\x72\x73\x09")) == codes.ACCEPTED
    site.cfg = config.load(site.d)
    site.boot()
    assert site.m.cfg["install_seq"] == R.SEQ_MAX
