"""tools/cardtool.py (CPython) against card images, and interop with the
meter's own card session running in the MicroPython unix port."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from conftest import MICROPYTHON, mp_env
import cardtool
from card import keys as K
from card import records as R
from card.mifare import access_bytes, access_conditions


TAP = """
import sys
from test_card_rig import fake_rig, rig_tap, ClassicCard
path, meter_id = sys.argv[1], sys.argv[2]
r = fake_rig(meter_id=meter_id)
c = ClassicCard.load(path)
print(rig_tap(r, c), r.meter.balance)
c.save(path)
"""


SIGNED_TAP = """
import sys
from test_card_rig import meter_rig, tap, ClassicCard
path, meter_id = sys.argv[1], sys.argv[2]
m, hw, s = meter_rig(meter_id=meter_id)
c = ClassicCard.load(path)
print(tap(hw, s, c), m.billing.tariff.version if m.staged is None else m.staged.version)
c.save(path)
"""
SIM_T0 = 1767225600     # the simulated board's clock at start (boards/unix)


def signed_tap(path, meter_id="M000001"):
    """Tap a multi-meter card on a simulated meter holding the test office
    key: (result code, tariff version in force or staged)."""
    src = SIGNED_TAP.replace("sys.argv[1], sys.argv[2]", repr((str(path), meter_id)))
    out = subprocess.run([MICROPYTHON, "-c", src], env=mp_env(),
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    code, tv = out.stdout.split()
    return int(code), int(tv)


def meter_tap(path, meter_id="M000001"):
    """Tap the image on a simulated meter (firmware session, MicroPython)."""
    out = subprocess.run([MICROPYTHON, "-c", TAP.replace("sys.argv[1], sys.argv[2]", repr((str(path), meter_id)))],
                         env=mp_env(), capture_output=True,
                         text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    code, balance = out.stdout.split()
    return int(code), int(balance)


def tool(*args):
    return cardtool.main(["--test-keys", *[str(a) for a in args]])


@pytest.fixture
def user_image(tmp_path):
    p = tmp_path / "card.json"
    assert tool("new", p, "--uid", "11223344") == 0
    assert tool("issue", p, "user", "--meter", "M000001", "--region", 1, "--account", 42,
                "--amount", 5000) == 0
    return p


def station(p):
    return cardtool.Station(K.testing_issuer(), cardtool.ImageReader(p))


def test_issue_read_audit(user_image):
    info = station(user_image).read()
    assert info["header"]["meter"] == "M000001" and info["header"]["account"] == 42
    assert info["credit"] == {"seq": 1, "amount": 5000, "flags": 0}
    assert info["consumed"] is False
    assert station(user_image).audit() == []


def test_topup_waits_for_the_meter_then_follows(user_image, capsys):
    assert tool("topup", user_image, "--amount", 100) == 2      # seq 1 not applied yet
    assert "has not said that it applied" in capsys.readouterr().err
    assert meter_tap(user_image) == (0, 5000)                   # ACCEPTED on the meter
    info = station(user_image).read()
    assert info["consumed"] and info["verdict"] == "applied" and info["returned"]["credit_seq"] == 1
    assert info["returned"]["balance"] == 5000
    assert tool("topup", user_image, "--amount", 100) == 0
    assert station(user_image).read()["credit"]["seq"] == 2
    assert meter_tap(user_image) == (0, 100)                    # fresh fake meter: only seq 2


def test_image_tap_on_wrong_meter(user_image):
    assert meter_tap(user_image, "M000002")[0] == R.FOREIGN   # one card per meter: its keys are not ours


def test_audit_finds_tampering(user_image):
    d = json.loads(user_image.read_text())
    b = bytearray.fromhex(d["blocks"][8])
    b[9] ^= 1                                                    # credit ciphertext
    d["blocks"][8] = b.hex()
    user_image.write_text(json.dumps(d))
    problems = station(user_image).audit()
    assert any("credit record" in p for p in problems), problems
    t = bytearray.fromhex(d["blocks"][19])                       # sector 4 trailer
    t[0:6] = b"\xff" * 6                                         # key A back to transport
    d["blocks"][19] = t.hex()
    user_image.write_text(json.dumps(d))
    problems = station(user_image).audit()
    assert any("sector 4 opens with the transport key" in p for p in problems), problems


def test_issue_refuses_a_used_card(user_image):
    assert tool("issue", user_image, "user", "--meter", "M000001", "--region", 1) == 2


def test_office_signed_check_and_tariff_cards(tmp_path):
    p = tmp_path / "check.json"
    tool("new", p, "--uid", "a1a2a3a4")
    assert tool("--test-office", "issue", p, "check", "--region", 1, "--start", SIM_T0) == 0
    assert signed_tap(p, "M000001")[0] == 0
    assert signed_tap(p, "M000002")[0] == 0
    info = station(p).read()
    assert info["document"]["k"] == "check" and info["document"]["r"] == 1
    assert sorted(r["meter"] for r in info["readings"]) == ["M000001", "M000002"]
    assert station(p).audit() == []
    q = tmp_path / "tariff.json"
    tool("new", q, "--uid", "04112233445566", "--size", "4k")
    assert tool("--test-office", "issue", q, "tariff", "--meters", "M000001,M000003",
                "--tariff", '{"v": 3, "at": 0, "sc": 0, "b": [[0, 400000]]}') == 0
    assert signed_tap(q) == (0, 3)
    assert signed_tap(q, "M000002")[0] == 7      # not on the card's list: wrong-meter
    # without an office key the tool refuses to make one
    r = tmp_path / "v.json"
    tool("new", r, "--uid", "a1a2a3a5")
    with pytest.raises(SystemExit):
        tool("issue", r, "valve-test", "--region", 1)


def test_access_bits_and_value_helpers():
    assert access_conditions(b"\xff\x07\x80") == (0, 0, 0, 1)   # factory
    assert access_bytes(0, 0, 0, 1) == b"\xff\x07\x80"
    for c in range(8):
        ab = access_bytes(c, 7 - c, c, (c + 3) % 8)
        assert access_conditions(ab) == (c, 7 - c, c, (c + 3) % 8)
    assert access_conditions(b"\xff\x07\x81") is None           # malformed


def test_pure_aes_and_hmac_vectors():
    key = bytes(range(16))
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert R._PureAES.encrypt_block(key, pt).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    mac = R.hmac_sha256(b"key", b"The quick brown fox jumps over the lazy dog").hex()
    assert mac == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_test_keys_need_the_flag():
    with pytest.raises(ValueError):
        K.IssuerKeys(b"TEST-MB-00000000", b"TEST-MR-00000000")
    with pytest.raises(SystemExit):
        cardtool.main(["read", "x.json"])


def test_diversified_keys_differ_per_uid_sector_and_meter():
    i = K.testing_issuer()
    uids = (b"\x01\x02\x03\x04", b"\x01\x02\x03\x05")
    ks = {i.key_a(u, s, m) for u in uids for s in range(5) for m in ("M1", "M2")}
    assert len(ks) == 20
    assert i.key_a(uids[0], 1, "M1") != i.key_b(uids[0], 1)


def test_a_meters_secrets_give_no_key_of_another_meters_cards():
    # what a dump of meter M1 holds: its provisioning entry, nothing else
    i = K.testing_issuer()
    m1 = K.MeterKeys.from_secrets(i.meter_secrets("M1"), allow_test=True)
    held = set(m1.revs.values())
    assert held == {i.meter_key("M1")}              # one secret, this meter's own
    assert i.mr not in held and i.mb not in held
    for uid in (b"\x01\x02\x03\x04", b"\x04\x5a\x6b\x7c\x8d\x9e\x80"):
        for s in R.SECTORS_USED:
            assert m1.key_a(uid, s, 1) == i.key_a(uid, s, "M1")
            assert m1.key_a(uid, s, 1) != i.key_a(uid, s, "M2")
    assert m1.record_key(1) == i.meter_key("M1") != i.meter_key("M2")


TAP_BOTH = """
from test_card_rig import fake_rig, rig_tap, ClassicCard
r = fake_rig()
codes = []
for path in PATHS:
    c = ClassicCard.load(path)
    codes.append(rig_tap(r, c))
    r.model.remove(c)
print(" ".join(str(x) for x in codes), r.meter.balance)
"""


def test_a_second_card_of_the_same_account_gets_new_sequence_numbers(tmp_path):
    # The office book, not the card, knows which numbers the account has had:
    # a replacement card must not repeat seq 1, or the meter answers USED and
    # the customer's paid credit is never applied.
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for p, uid in ((a, "11223344"), (b, "55667788")):
        assert tool("new", p, "--uid", uid) == 0
        assert tool("issue", p, "user", "--meter", "M000001", "--region", 1, "--account", 42,
                    "--card-no", 1 if p == a else 2, "--amount", 1000 if p == a else 5000) == 0
    assert station(a).read()["credit"]["seq"] == 1
    assert station(b).read()["credit"]["seq"] == 2
    src = TAP_BOTH.replace("PATHS", repr([str(a), str(b)]))
    out = subprocess.run([MICROPYTHON, "-c", src], env=mp_env(), capture_output=True,
                         text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    c1, c2, balance = out.stdout.split()
    assert (int(c1), int(c2), int(balance)) == (0, 0, 6000), "both cards' credit applied"
    book = json.loads((tmp_path / "office-book.json").read_text())
    assert book["credit"]["42"] == 2


HISTORY_TAP = """
import json, sys
from test_card_rig import meter_rig, tap, ClassicCard
path, meter_id = sys.argv[1], sys.argv[2]
m, hw, s = meter_rig(meter_id=meter_id, reopen="auto")
m.apply_credit("card", 1, 1, 50_000_000)
hw.world.flow.set_rate_lph(9)
for _ in range(10 * 24):
    hw.clock.advance(3_600_000)
    m.poll()
c = ClassicCard.load(path)
code = tap(hw, s, c)
c.save(path)
print(code, json.dumps([[r[1], r[5], r[7]] for r in m.history.records("d", 0, 8)]))
"""


def test_check_card_history_is_read_and_verified_by_the_office(tmp_path):
    p = tmp_path / "check.json"
    tool("new", p, "--uid", "a1a2a3a5")
    assert tool("--test-office", "issue", p, "check", "--region", 1, "--start", SIM_T0, "--days", 30,
                "--history", 8) == 0
    src = HISTORY_TAP.replace("sys.argv[1], sys.argv[2]", repr((str(p), "M000001")))
    out = subprocess.run([MICROPYTHON, "-c", src], env=mp_env(),
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    code, recs = out.stdout.split(" ", 1)
    recs = json.loads(recs)
    assert int(code) == 0 and len(recs) == 8
    info = station(p).read()
    assert info["document"]["h"] == 8
    h = info["history"]["M000001"]
    assert h["t"] == recs[0][0]
    assert h["days"] == [[ml // 1000, chg // 1000] for _, ml, chg in recs]
    assert [r["meter"] for r in info["readings"]] == ["M000001"]
    q = tmp_path / "x.json"
    tool("new", q, "--uid", "a1a2a3a6")
    with pytest.raises(SystemExit, match="history"):
        tool("--test-office", "issue", q, "check", "--region", 1, "--history", 43)
