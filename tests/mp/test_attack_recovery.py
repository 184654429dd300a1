# Attacks on credit recovery after the outside review of issue 10: the floor
# and void are office-signed (a flash dump's meter key makes neither), and a
# provisioned meter whose state is wiped boots lost, not new (docs/CARD.md
# §5.2-5.3). Each test fails if its attack works.
import os

import codes
from commskit import make_link, command, recovery, send

_FORGER = 0x5EED   # any ECDSA key but the office's: a meter holds no office private key


def _wipe_state(d):
    for i in (0, 1):
        os.remove("%s/state.%d" % (d, i))


def test_attack_meter_key_cannot_make_a_floor():
    link, m, hw, b, rt = make_link()
    for s in range(1, 6):
        assert m.apply_credit("card", 1, s, 2_000_000) == codes.ACCEPTED   # 5 paid card credits
    _wipe_state(hw.state_dir)
    link2, m2, hw2, b2, rt2 = make_link(state_dir=hw.state_dir)
    assert m2.state_lost
    rn = m2.snapshot()["rn"]
    # the old floor, sealed with the meter's own key (secrets.json "mk"): not a floor any more
    old = command(link2, 1 << 20, "floor", a=1, c=0, m=0, i=0, r=rn)
    assert send(link2, b2, old)[-1]["code"] == codes.FORMAT
    # a signed document, but not by the office
    forged = recovery(link2, (1 << 20) + 1, "floor", d=_FORGER, a=1, c=0, q=0, i=0, rn=rn)
    assert send(link2, b2, forged)[-1]["code"] == codes.SIGNATURE
    # the office's document for another loss (another nonce), or expired
    stale = recovery(link2, (1 << 20) + 2, "floor", a=1, c=0, q=0, i=0, rn=rn ^ 1)
    assert send(link2, b2, stale)[-1]["code"] == codes.OLD
    late = recovery(link2, (1 << 20) + 3, "floor", x=hw2.clock.time() - 1, a=1, c=0, q=0, i=0, rn=rn)
    assert send(link2, b2, late)[-1]["code"] == codes.OLD
    assert m2.state_lost
    assert [m2.apply_credit("card", 1, s, 2_000_000) for s in range(1, 6)] == [codes.REFUSED] * 5
    # the office's floor: the card credits it issued are settled for good
    good = recovery(link2, (1 << 20) + 4, "floor", a=1, c=5, q=0, i=0, rn=rn)
    assert send(link2, b2, good)[-1]["code"] == codes.ACCEPTED
    assert [m2.apply_credit("card", 1, s, 2_000_000) for s in range(1, 6)] == [codes.OLD] * 5
    assert m2.balance <= 0


def test_attack_meter_key_cannot_void():
    # a void settles a key: made with the meter's own key it would let the
    # customer void a credit before the office re-sends it, or fake a refund
    link, m, hw, b, rt = make_link()
    assert m.apply_credit("card", 1, 1, 1000) == codes.ACCEPTED
    assert send(link, b, command(link, 1, "void", a=1, s=2, c=1))[-1]["code"] == codes.FORMAT
    forged = recovery(link, 2, "void", d=_FORGER, a=1, s=2, c=1)
    assert send(link, b, forged)[-1]["code"] == codes.SIGNATURE
    assert m.ledger.check("card", 1, 2) == codes.ACCEPTED       # nothing was settled
    # the office's void: applied is USED, unapplied ACCEPTED and then never applies
    assert send(link, b, recovery(link, 3, "void", a=1, s=1, c=1))[-1]["code"] == codes.USED
    assert send(link, b, recovery(link, 4, "void", a=1, s=2, c=1))[-1]["code"] == codes.ACCEPTED
    assert m.apply_credit("card", 1, 2, 1000) == codes.VOIDED
    assert send(link, b, recovery(link, 5, "void", a=1, s=7))[-1]["code"] == codes.ACCEPTED
    assert m.apply_credit("mqtt", 1, 7, 1000) == codes.VOIDED


def _rm_all_but_secrets(d):
    for ent in os.ilistdir(d):
        p = d + "/" + ent[0]
        if ent[1] == 0x4000:
            _rm_all_but_secrets(p)
            os.rmdir(p)
        elif ent[0] != "secrets.json":
            os.remove(p)


def test_attack_wiping_all_but_the_secrets_boots_lost_not_new():
    # S7's evidence (event log, damaged slots, counter file, installed
    # config) is all deletable; secrets.json is what the card session and
    # the link need, so the customer keeps it. Provisioning's first state
    # copy makes "secrets, no state" a loss.
    import json
    import boards
    import config
    import main
    import officekit
    from mptest import fresh_dir
    from simkit import make_meter
    from storage.state import mark_provisioned
    d = fresh_dir("prov")
    with open(d + "/secrets.json", "w") as f:
        f.write(json.dumps(officekit.secrets()))
    assert mark_provisioned(d, 1_700_000_000)
    assert not mark_provisioned(d)                    # only ever the first copy
    m, hw = make_meter(d)
    assert not m.state_lost                           # provisioned, first boot: new
    for s in range(1, 6):
        assert m.apply_credit("card", 1, s, 2_000_000) == codes.ACCEPTED
    m, hw = make_meter(d)
    assert not m.state_lost and m.balance == 10_000_000   # an ordinary reboot
    _rm_all_but_secrets(d)
    m2 = main.assemble(boards.load("unix").build(state_dir=d), config.load(d))
    assert m2.state_lost
    assert [m2.apply_credit("card", 1, s, 2_000_000) for s in range(1, 6)] == [codes.REFUSED] * 5
    # a meter that was never provisioned (no secrets, no state) is still new
    m3, _ = make_meter()
    assert not m3.state_lost
    assert m3.apply_credit("card", 1, 1, 1000) == codes.ACCEPTED
