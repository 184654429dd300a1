"""Attacks on tools/rollout.py's rules by one customer's meter in the group
(docs/OTA.md §6, SECURITY.md U15, U16). The rules read the head-end's
database; the publishes are recorded instead of sent (the MQTT path is
tests/host/test_ota_rollout.py's, on Mosquitto). Each test fails if the
attack works."""
import sys

from conftest import ROOT, sql

sys.path.insert(0, str(ROOT / "tools"))
import codes
from rollout import Rollout, bucket, sim_image

from utility.store import migrate, open_store


class _Pub:
    def wait_for_publish(self, timeout=None):
        return True


class _Client:
    def __init__(self):
        self.retained = {}
        self.bytes = 0

    def publish(self, topic, payload, qos=0, retain=False):
        if retain:
            self.retained[topic] = payload
        else:
            self.bytes += len(payload)
        return _Pub()


class _HE:
    def __init__(self, path=None):
        self.engine = open_store(path or "sqlite://")
        migrate(self.engine)
        self.c = _Client()

    def _need_client(self):
        return self.c

    def sign_doc(self, purpose, doc):
        return b"signed"


class _Clock:
    t = 1_000_000.0

    def __call__(self):
        return self.t


def _ids(pred, n):
    out, i = [], 0
    while len(out) < n:
        if pred(bucket(f"M{i}")):
            out.append(f"M{i}")
        i += 1
    return out


def _ev(he, m, seq, v, step, received, detail=0):
    sql(he, "INSERT INTO meters (id, region) VALUES (:m, 1) ON CONFLICT DO NOTHING", m=m)
    sql(he, "INSERT INTO events VALUES (:m, :seq, 0, 0, :code, :arg, :received)", m=m, seq=seq,
        code=codes.EV_OTA, arg=v << 16 | detail << 8 | step, received=received)


def test_a_member_that_accepts_then_goes_quiet_stalls_the_group_only_for_busy_s():
    he, clk = _HE(), _Clock()
    g1 = _ids(lambda b: b < 1, 5)
    r = Rollout(he, sim_image(b"x" * 1000), 2, "unix", 1, clock=clk, busy_s=3600)
    r.start(1)
    for m in g1[:4]:
        _ev(he, m, 1, 2, codes.OTA_ACCEPTED, clk.t)
        _ev(he, m, 2, 2, codes.OTA_VALID, clk.t)
    _ev(he, g1[4], 1, 2, codes.OTA_ACCEPTED, clk.t)   # accepted, then offline
    assert r.check() == "running" and r.group == 1      # still waited for
    clk.t += 3601
    assert r.tally()["stalled"] == 1
    assert r.check() == "running" and r.group == 2      # no longer


def test_blocks_go_only_to_meters_still_updating_and_at_a_bounded_rate():
    he, clk = _HE(), _Clock()
    img = sim_image(b"x" * 200_000)
    r = Rollout(he, img, 2, "unix", 1, clock=clk, block_gap_s=0.25)
    r.start(3)                                          # the whole region
    req = b'{"v":2,"o":0,"n":4096}'
    quiet, member = _ids(lambda b: True, 2)
    _ev(he, quiet, 1, 2, codes.OTA_VALID, clk.t)        # already runs version 2: needs no blocks
    for _ in range(1000):
        r.serve(quiet, req)
    assert he.c.bytes == 0
    _ev(he, member, 1, 2, codes.OTA_ACCEPTED, clk.t)
    for _ in range(1000):                               # a flood within one second
        r.serve(member, req)
        clk.t += 0.001
    assert he.c.bytes <= 4 * (4096 + 2 * 5)             # four blocks a second at most
    clk.t += 1
    r.serve(member, req)
    assert he.c.bytes > 4096                            # and the meter is still served


def test_a_meter_outside_the_current_group_gets_no_blocks():
    he, clk = _HE(), _Clock()
    r = Rollout(he, sim_image(b"x" * 20_000), 2, "unix", 1, clock=clk)
    r.start(1)
    outsider = _ids(lambda b: b >= 10, 1)[0]
    _ev(he, outsider, 1, 2, codes.OTA_ACCEPTED, clk.t)  # claims it accepted (its own meter)
    for _ in range(100):
        clk.t += 1
        r.serve(outsider, b'{"v":2,"o":0,"n":4096}')
    assert he.c.bytes == 0


def test_meters_reporting_tamper_count_as_failures_not_as_busy():
    # readers unplugged at the first boot: each meter rolls back, its old
    # image fails the same check (tamper), and the trial is held a day. The
    # group must halt on them, not wait busy_s as if they were updating.
    he, clk = _HE(), _Clock()
    g1 = _ids(lambda b: b < 1, 3)
    r = Rollout(he, sim_image(b"x" * 1000), 2, "unix", 1, clock=clk, busy_s=3600)
    r.start(1)
    for m in g1:
        _ev(he, m, 1, 2, codes.OTA_ACCEPTED, clk.t)
        _ev(he, m, 2, 2, codes.OTA_SWITCHED, clk.t)
        _ev(he, m, 3, 2, codes.OTA_TAMPER, clk.t, detail=4)        # the card check, on the old image
    assert r.tally()["failed"] == 3
    assert r.check() == "halted" and he.c.retained["r/1/ota/unix"] == he.c.retained["r/1/ota"] == b""


def test_a_restarted_headend_keeps_the_soak_timer_and_the_rules(tmp_path):
    # every rollout command is its own process (headend.py rollout): the
    # group's start, its rules and the image are the database's
    he, clk = _HE(tmp_path / "he.sqlite"), _Clock()
    g1 = _ids(lambda b: b < 1, 2)
    img = sim_image(b"x" * 5000)
    r = Rollout(he, img, 2, "unix", 1, clock=clk, soak_s=3600, min_failed=2, threshold=0.5)
    r.start(1)
    for m in g1:
        _ev(he, m, 1, 2, codes.OTA_VALID, clk.t)
    clk.t += 1800
    assert r.check() == "running" and r.group == 1       # soaking
    he.engine.dispose()
    he = _HE(tmp_path / "he.sqlite")                      # the head-end restarts 1 h later
    clk.t += 1900
    r = Rollout.load(he, 2, "unix", 1, clock=clk)
    assert (r.image, r.group, r.status, r.min_failed, r.threshold) == (img, 1, "running", 2, 0.5)
    assert r.check() == "running" and r.group == 2        # 3700 s after group 1 began


def test_a_resumed_rollout_counts_only_new_failures():
    he, clk = _HE(), _Clock()
    g1 = _ids(lambda b: b < 1, 3)
    r = Rollout(he, sim_image(b"x" * 1000), 2, "unix", 1, clock=clk)
    r.start(1)
    for m in g1:
        _ev(he, m, 1, 2, codes.OTA_SELFTEST_FAILED, clk.t, detail=4)
    assert r.check() == "halted"
    clk.t += 60
    r.resume()
    assert r.status == "running" and he.c.retained["r/1/ota/unix"] == he.c.retained["r/1/ota"] == b"signed"
    assert r.check() == "running" and r.tally()["failed"] == 0
    for m in g1:
        _ev(he, m, 2, 2, codes.OTA_ROLLED_BACK, clk.t, detail=1)   # they fail again after the resume
    assert r.check() == "halted"


def test_power_cuts_at_first_boots_are_not_failures_of_the_image():
    # customers switch the power off during the new image's trial (event 10
    # detail 0: power-on): the meter tries again, the image is not at fault,
    # so the group must not halt on them; a watchdog's rollback still counts
    he, clk = _HE(), _Clock()
    g1 = _ids(lambda b: b < 1, 4)
    r = Rollout(he, sim_image(b"x" * 1000), 2, "unix", 1, clock=clk, busy_s=3600)
    r.start(1)
    for m in g1[:3]:
        _ev(he, m, 1, 2, codes.OTA_SWITCHED, clk.t)
        _ev(he, m, 2, 2, codes.OTA_ROLLED_BACK, clk.t)              # detail 0: the power
    _ev(he, g1[3], 1, 2, codes.OTA_VALID, clk.t)
    assert r.tally()["failed"] == 0 and r.tally()["busy"] == 3
    assert r.check() == "running" and r.group == 1
    for m in g1[:3]:
        _ev(he, m, 3, 2, codes.OTA_ROLLED_BACK, clk.t, detail=1)    # a trial the watchdog ended
    assert r.check() == "halted"


def test_meters_of_another_board_in_the_region_do_not_hold_the_group():
    # a region of mains and battery meters: the mains rollout's group 1 has
    # battery meters in it, which refuse the manifest as wrong-board and
    # never report valid. They are not members: the group goes on once its
    # mains members are valid, and the rules count only those (before,
    # a group 1 with only battery meters in it waited for ever).
    he, clk = _HE(), _Clock()
    mains, battery = _ids(lambda b: b < 1, 1), _ids(lambda b: b < 1, 3)[1:]
    r = Rollout(he, sim_image(b"x" * 1000), 2, "esp32_devkitc", 1, clock=clk)
    r.start(1)
    for m in battery:
        _ev(he, m, 1, 2, codes.OTA_REFUSED, clk.t, detail=codes.WRONG_BOARD)
    assert r.tally() == {"members": 0, "valid": 0, "failed": 0, "busy": 0, "stalled": 0}
    assert r.check() == "running" and r.group == 2        # nothing of this board in group 1
    _ev(he, mains[0], 1, 2, codes.OTA_ACCEPTED, clk.t)
    assert r.tally()["members"] == 1 and r.tally()["busy"] == 1
    assert r.check() == "running" and r.group == 2        # the mains meter is waited for
    _ev(he, mains[0], 2, 2, codes.OTA_VALID, clk.t)
    assert r.check() == "running" and r.group == 3
    # a refusal for a group not yet reached (code refused) is no verdict: still a member
    m = _ids(lambda b: 1 <= b < 10, 1)[0]
    _ev(he, m, 1, 2, codes.OTA_REFUSED, clk.t, detail=codes.REFUSED)
    assert r.state_of(m) is None


def test_a_halt_clears_only_its_boards_manifest_and_hands_the_region_topic_back():
    # two boards' rollouts at once in region 1: each on r/1/ota/<board>;
    # the region-wide r/1/ota of older images holds the latest out, and a
    # halt of it puts the other board's running manifest back there
    # (a deliberately broken _feed_legacy that clears it fails here)
    he, clk = _HE(), _Clock()
    he.sign_doc = lambda purpose, doc: b"%s v%d g%d" % (doc["b"].encode(), doc["v"], doc["g"])
    ra = Rollout(he, sim_image(b"a" * 1000), 2, "unix", 1, clock=clk)
    rb = Rollout(he, sim_image(b"b" * 1000), 7, "unix_battery", 1, clock=clk)
    ra.start(1)
    clk.t += 10
    rb.start(3)
    got = he.c.retained
    assert (got["r/1/ota/unix"], got["r/1/ota/unix_battery"], got["r/1/ota"]) == (
        b"unix v2 g1", b"unix_battery v7 g3", b"unix_battery v7 g3")
    rb.halt()
    assert (got["r/1/ota/unix"], got["r/1/ota/unix_battery"], got["r/1/ota"]) == (b"unix v2 g1", b"", b"unix v2 g1")
    ra.halt()
    assert got["r/1/ota/unix"] == got["r/1/ota"] == b""
    for bad in ("", "a/b", "x+", "#", "a" * 33):
        try:
            Rollout(he, sim_image(b"c" * 1000), 9, bad, 1)
            raise AssertionError(bad)
        except ValueError as e:
            assert "letters, digits or _" in str(e)
