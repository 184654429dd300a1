"""Attacks on the vending office's verdicts (docs/SECURITY.md, "Cards, keys
and the credit ledger"): the customer holds the card, so nothing on it may
make the office believe that a credit was not applied. tools/cardtool.py
(CPython) against the meter's own card session (MicroPython unix port)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "host"))
sys.path.insert(0, str(ROOT / "tools"))
from conftest import sql
from headend import HeadEndError
from test_cardtool import meter_tap, station, tool


def _issue(tmp_path, amount=5000):
    p = tmp_path / "card.json"
    assert tool("new", p, "--uid", "11223344") == 0
    assert tool("issue", p, "user", "--meter", "M000001", "--region", 1, "--account", 42,
                "--amount", amount) == 0
    return p


def test_attack_customer_rolls_back_the_return_record(tmp_path):
    p = _issue(tmp_path)
    before = json.loads(p.read_text())               # the customer's dump, before the tap
    assert meter_tap(p) == (0, 5000)                 # ACCEPTED: the credit is in the meter
    assert station(p).read()["verdict"] == "applied"
    # the customer puts the old return-record sectors (3 and 4) back
    d = json.loads(p.read_text())
    for blk in range(12, 20):
        d["blocks"][blk] = before["blocks"][blk]
    p.write_text(json.dumps(d))
    info = station(p).read()
    # the card cannot prove "not applied": the office must not refund or
    # re-issue from it (only the meter's answer to a void can say so) ...
    assert info["verdict"] == "unsettled", info
    assert not info["consumed"]
    # ... and it does not load another credit over it either
    assert tool("topup", p, "--amount", 100) == 2


def test_attack_replacement_meter_takes_no_credit_before_the_signed_floor(mqtt_world):
    # docs/CARD.md §5.3 end to end: the head-end provisions a replacement for
    # M5 with the old binding; it refuses credits until the signed floor, and
    # the refused top-up is re-issued under a new sequence, applied once
    w = mqtt_world
    he = w.he
    d = w.tmp / "M5-replacement"
    he.provision("M5", 1, d, {"host": w.broker.host, "port": w.broker.port, "tls": True,
                              "keepalive": 10, "backoff_max_s": 2, "timeout_ms": 3000},
                 w.broker.ca_pem, replaces=(7, 1))
    c = json.loads((d / "config.json").read_text())
    assert (c["account"], c["install_seq"]) == (7, 1)
    c.update({"report_s": 60, "reopen": "auto", "friendly_hours": [0, 0], "friendly_days": []})
    (d / "config.json").write_text(json.dumps(c))
    m = w.start_meter("M5", state_dir=d)
    try:
        m.wait(lambda s: s["connected"], what="M5 connected")
        assert he.get("M5")["detail"]["rn"] != 0                  # a loss is pending
        assert he.topup("M5", 1_000_000, account=7)["code"] == 11  # refused: no floor yet
        a = he.restore_floor("M5", 7, card_floor=3, install_floor=1)
        assert a["code"] == 0, a
        st = he.get("M5")["detail"]
        assert st["rn"] == 0 and st["bal"] == 1_000_000            # re-issued once, applied once
        with pytest.raises(HeadEndError):                           # nothing left to restore
            he.restore_floor("M5", 7, card_floor=3)
        # the office's verdicts come from the meter's signed answers to a void
        seq = max(r[0] for r in sql(he, "SELECT seq FROM topups WHERE meter = 'M5' AND "
                                         "status = 'applied'"))
        assert he.void("M5", 7, seq)["code"] == 1                   # applied: nothing owed
        assert he.void("M5", 7, seq + 1)["code"] == 0               # never applied, never will be
        assert he.topup("M5", 5000, account=7, seq=seq + 1)["code"] == 21   # voided
        assert he.get("M5")["detail"]["bal"] == 1_000_000
    finally:
        m.stop()


def test_attack_reissue_is_the_same_key(tmp_path):
    # "my credit never arrived" (or the card is lost): the office re-writes
    # the credit under its OWN key, so a credit the meter did apply can only
    # answer USED; no verdict, true or forged, is needed to re-issue
    p = _issue(tmp_path, amount=7000)
    assert tool("reissue", p) == 0
    info = station(p).read()
    assert (info["credit"]["seq"], info["credit"]["amount"]) == (1, 7000)
    assert meter_tap(p) == (0, 7000)
    assert tool("reissue", p) == 2                           # the meter's record: applied
    # onto a replacement card: the lost card's key from the office's records
    q = tmp_path / "card2.json"
    assert tool("new", q, "--uid", "55667788") == 0
    assert tool("issue", q, "user", "--meter", "M000001", "--region", 1, "--account", 42,
                "--card-no", 2) == 0
    assert tool("reissue", q, "--seq", 1, "--amount", 7000) == 0
    assert station(q).read()["credit"]["seq"] == 1
    assert tool("reissue", q, "--seq", 2, "--amount", 7000) == 2    # never issued: not a re-issue
    # a new credit still takes the book's next sequence
    assert tool("topup", q, "--amount", 100, "--force") == 0
    assert station(q).read()["credit"]["seq"] == 2
