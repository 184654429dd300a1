# The one path that changes a setting (Meter.configure) and the one table it
# checks against (config.check), also used by config.load.
import json

import codes
import config
from mptest import fresh_dir
from simkit import make_meter


def _load(raw):
    d = fresh_dir("cfg")
    with open(d + "/config.json", "w") as f:
        f.write(json.dumps(raw))
    return config.load(d)


def test_load_applies_paired_settings_whatever_their_order():
    for raw in ({"low2": 1_500_000, "low1": 2_000_000}, {"low1": 2_000_000, "low2": 1_500_000}):
        c = _load(raw)
        assert (c["low1"], c["low2"]) == (2_000_000, 1_500_000) and "_error" not in c, c
    # a pair that contradicts itself: both keep their defaults, and the error names them
    for raw, hi, lo in (({"low2": 3_000_000, "low1": 2_000_000}, "low1", "low2"),
                        ({"max_topup": 800_000_000, "max_balance": 700_000_000}, "max_balance",
                         "max_topup")):
        c = _load(raw)
        assert (c[hi], c[lo]) == (config.DEFAULTS[hi], config.DEFAULTS[lo]), c
        assert hi in c["_error"] and lo in c["_error"]
    c = _load({"low2": 3_000_000})                 # against the default low1
    assert c["low2"] == config.DEFAULTS["low2"] and "low2" in c["_error"]


def test_configure_checks_saves_applies_and_logs():
    m, hw = make_meter()
    assert m.configure("low1", 2_000_000, "repl") == (codes.ACCEPTED, None)
    assert config.load(hw.state_dir)["low1"] == 2_000_000
    ev = m.log.recent(1)[0]
    assert (ev[2], ev[3]) == (codes.EV_CONFIG, config.number("low1"))
    assert m.configure("low1", "2000000", "mqtt")[0] == codes.FORMAT
    assert m.configure("low1", 2_000_000_001, "mqtt")[0] == codes.RANGE
    assert m.configure("low2", 2_000_001, "mqtt")[0] == codes.RANGE      # above low1
    assert m.configure("poll_ms", 500, "mqtt")[0] == codes.UNKNOWN       # not a head-end setting
    assert m.configure("poll_ms", 500, "repl")[0] == codes.ACCEPTED
    assert m.configure("tariff", {}, "repl")[0] == codes.REFUSED
    assert m.cfg["low1"] == 2_000_000 and m.cfg["low2"] == config.DEFAULTS["low2"]


def test_configure_that_cannot_save_changes_nothing():
    m, hw = make_meter()

    def full():
        raise OSError(28)
    m.persist_config = full
    n = m.log.seq
    assert m.configure("report_s", 900, "mqtt")[0] == codes.STORAGE
    assert m.cfg["report_s"] == config.DEFAULTS["report_s"] and m.log.seq == n
