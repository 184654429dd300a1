"""Attacks on the vending office's verdicts (docs/SECURITY.md, "Cards, keys
and the credit ledger"): the customer holds the card, so nothing on it may
make the office believe that a credit was not applied. tools/cardtool.py
(CPython) against the meter's own card session (MicroPython unix port)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "host"))
sys.path.insert(0, str(ROOT / "tools"))
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
