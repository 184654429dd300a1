# firmware/authority.py: office key revisions, domain separation by purpose,
# retired revisions, and loading keys from secrets.json. Signatures come from
# the host's `cryptography` package (tests/fixtures/p256_vectors.json).
import json
from binascii import unhexlify

import authority
from mptest import raises

TIMEOUT = 120


def _fixture():
    with open("tests/fixtures/p256_vectors.json") as f:
        return json.load(f)["authority"]


def test_signer_revision_and_purpose():
    fx = _fixture()
    keys = authority.load({"office": fx["office"], "office_min_rev": 1})
    for c in fx["cases"]:
        got = authority.signer(keys, c["purpose"].encode(), unhexlify(c["payload"]),
                               unhexlify(c["sig"]))
        assert got == c["rev"], "%s: got %d" % (c["why"], got)
        assert authority.verify(keys, c["purpose"].encode(), unhexlify(c["payload"]),
                                unhexlify(c["sig"])) == (c["rev"] != 0)


def test_retired_revision_refused():
    fx = _fixture()
    c1 = [c for c in fx["cases"] if c["rev"] == 1][0]
    args = (c1["purpose"].encode(), unhexlify(c1["payload"]), unhexlify(c1["sig"]))
    keys = authority.load({"office": fx["office"], "office_min_rev": 2})
    assert authority.signer(keys, *args) == 0
    keys = authority.load({"office": fx["office"]})
    assert authority.signer(keys, *args) == 1
    assert keys.retire_below(2) and not keys.retire_below(1)
    assert authority.signer(keys, *args) == 0


def test_payload_change_refused():
    fx = _fixture()
    keys = authority.load({"office": fx["office"]})
    c = fx["cases"][0]
    pay = bytearray(unhexlify(c["payload"]))
    pay[3] ^= 1
    assert not authority.verify(keys, b"tariff", bytes(pay), unhexlify(c["sig"]))


def test_no_keys_and_bad_keys():
    assert authority.load({}) is None
    assert not authority.verify(None, b"tariff", b"x", bytes(64))
    raises(ValueError, authority.load, {"office": {"1": "zz"}})
    raises(ValueError, authority.load, {"office": {"1": "00" * 64}})   # (0,0) is no point
    raises(ValueError, authority.load, {"office": ["ab"]})
    raises(ValueError, authority.digest, b"tariff/x", b"")


def test_the_public_test_office_key_is_refused_outside_a_test_build():
    import officekit
    sec = officekit.secrets()
    raises(ValueError, authority.load, sec)
    assert authority.load(sec, allow_test=True).active() == [1]
