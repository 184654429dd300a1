# Attacks on office-signed multi-meter cards through the card lockout and the
# signature check (docs/CARD.md §5.1; outside review of issue 10). Each test
# fails if its attack works.
import authority
import codes
import officekit
from card import session as S
from test_attack_cards import Site, _junk
from test_card_rig import R, signed_card
from test_card_session import T

_RISE_UID = b"\x61\x62\x63\x64"


def test_attack_junk_cards_do_not_block_office_signed_cards():
    # 11 junk cards fill the per-UID table (8) and shut the shared overflow
    # entry (3); one junk tap an hour keeps it shut, with a power cut halfway.
    # A tariff card (public key A, office-signed) must still be read.
    site = Site()
    site.m.attach_office(officekit.keys())
    v = site.m.billing.tariff.version
    junk = [_junk(i) for i in range(60)]
    for j in junk[:11]:
        assert site.tap(j) in (codes.FOREIGN, codes.LOCKED_OUT)
    assert site.tap(junk[59]) == codes.LOCKED_OUT          # the gate is shut
    rise = signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=1, v=v + 1), uid=_RISE_UID)
    res = []
    for hour in range(48):
        if hour % 12 == 11:
            for j in junk[:8]:
                site.tap(j)
        site.tap(junk[11 + hour])
        res.append(site.tap(rise))
        site.wait_s(3600)
        if hour == 24:
            site.boot()
            site.m.attach_office(officekit.keys())
    assert set(res) == {codes.ACCEPTED}, res
    site.wait_s(3600)
    site.m.poll()
    assert site.m.billing.tariff.version == v + 1


def test_attack_junk_signed_cards_are_rationed():
    # anyone can make a card that opens with the public key A and carries a
    # plausible document: each would cost an ECDSA verify. Failed verifies
    # have their own budget; a genuine card gets through once it refills.
    site = Site()
    site.m.attach_office(officekit.keys())
    v = site.m.billing.tariff.version
    calls = [0]
    real = authority.signer

    def counting(*a):
        calls[0] += 1
        return real(*a)
    authority.signer = counting
    try:
        forged = [signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=1, v=v + 1),
                              uid=bytes((0x70, 0, 0, i)), d=12345 + i) for i in range(20)]
        got = [site.tap(c) for c in forged]
        assert calls[0] == S.SIG_BURST, (calls[0], got)
        assert got[:S.SIG_BURST] == [codes.SIGNATURE] * S.SIG_BURST
        assert set(got[S.SIG_BURST:]) == {codes.LOCKED_OUT}
        rise = signed_card(R.CARD_TARIFF, dict(T, k="tariff", r=1, v=v + 1), uid=_RISE_UID)
        assert site.tap(rise) == codes.LOCKED_OUT          # budget spent: no verify
        site.wait_s(S.SIG_REFILL_MS // 1000)
        assert site.tap(rise) == codes.ACCEPTED
        assert calls[0] == S.SIG_BURST + 1
    finally:
        authority.signer = real
