# Attacks on the stored state (issue 10 items 5 and 10, issue 11 item 7):
# the customer owns the flash. A flipped bit, a deleted or rolled-back copy,
# a wiped state or a damaged config.json must never hand back spent credit,
# reopen old install cards or reset the anti-replay counter, and each is
# reported (an event, and a bit of snapshot()["sf"]).
import json
import os
from binascii import crc32

import boards
import codes
import config
import main
import meter as meter_mod
from simkit import make_cfg, make_meter, run
from storage.state import StateStore


def _boot(state_dir, cfg=None):
    hw = boards.load("unix").build(state_dir=state_dir)
    return main.assemble(hw, cfg if cfg is not None else config.load(state_dir)), hw


def _events(m, code):
    return [e for e in m.log.recent(64) if e[2] == code]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_no_single_bit_flip_in_the_older_copy_makes_it_win():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    m.apply_credit("card", 1, 2, 9000)           # the newest copy: balance 16000
    newest = m.store.generation
    old_path = "%s/state.%d" % (hw.state_dir, (newest - 1) & 1)
    raw = bytearray(_read(old_path))
    store = StateStore(hw.state_dir)
    won = []
    for i in range(len(raw)):
        for bit in range(8):
            raw[i] ^= 1 << bit
            _write(old_path, raw)
            raw[i] ^= 1 << bit
            s = store.load()
            if s is None or s["bal"] != 16000:
                won.append((i, bit))
    _write(old_path, raw)
    assert not won, "flips that made the older copy win: %r" % won[:5]


def test_a_deleted_newest_copy_is_reported_not_silent():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    m.apply_credit("card", 1, 2, 9000)
    os.remove("%s/state.%d" % (hw.state_dir, m.store.generation & 1))
    m2, _ = _boot(hw.state_dir, m.cfg)
    assert m2.balance == 7000                     # the older copy is all there is ...
    assert [e[3] for e in _events(m2, codes.EV_STATE_ROLLBACK)] == [codes.STATE_COPY_MISSING]
    assert m2.snapshot()["sf"] & meter_mod.SF_STATE_ROLLBACK   # ... and the head-end sees it


def test_an_older_copy_put_back_is_reported():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    slot = "%s/state.%d" % (hw.state_dir, (m.store.generation + 1) & 1)
    m.apply_credit("card", 1, 2, 1000)           # written to `slot`
    image = _read(slot)                           # the customer keeps this copy ...
    for seq in (3, 4, 5):
        m.apply_credit("card", 1, seq, 1000)
    _write(slot, image)                           # ... and puts it back over the older twin
    m2, _ = _boot(hw.state_dir, m.cfg)
    assert [e[3] for e in _events(m2, codes.EV_STATE_ROLLBACK)] == [codes.STATE_GEN_GAP]
    assert m2.balance == 11000                    # the newest copy still wins


def test_both_copies_rolled_back_are_caught_by_the_event_log():
    # a consistent older pair cannot be told from the files alone; the log
    # remembers the generation the last boot restored
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    images = [_read("%s/state.%d" % (hw.state_dir, i)) for i in (0, 1)]
    m.apply_credit("card", 1, 2, 1000)
    m.apply_credit("card", 1, 3, 1000)
    m2, _ = _boot(hw.state_dir, m.cfg)           # logs the generation it restored
    for i in (0, 1):
        _write("%s/state.%d" % (hw.state_dir, i), images[i])
    m3, _ = _boot(hw.state_dir, m.cfg)
    assert m3.balance == 7000
    assert [e[3] for e in _events(m3, codes.EV_STATE_ROLLBACK)] == [codes.STATE_BEHIND_LOG]
    assert m3.snapshot()["sf"] & meter_mod.SF_STATE_ROLLBACK


def test_total_state_loss_is_flagged_until_the_office_floor_arrives():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    for i in (0, 1):
        os.remove("%s/state.%d" % (hw.state_dir, i))
    m2, hw2 = _boot(hw.state_dir, m.cfg)
    assert m2.state_lost
    assert _events(m2, codes.EV_STATE_LOST)
    assert m2.snapshot()["sf"] & meter_mod.SF_STATE_LOST
    m3, _ = _boot(hw.state_dir, m.cfg)            # a reboot does not forget it
    assert m3.state_lost
    assert not _events(m3, codes.EV_STATE_ROLLBACK), "the new state is no rollback"
    assert m3.restore_floors(1, 1, 0, 0, m3.snapshot()["rn"]) == codes.ACCEPTED   # the office's floor
    m4, _ = _boot(hw.state_dir, m.cfg)
    assert not m4.state_lost and not m4.snapshot()["sf"] & meter_mod.SF_STATE_LOST


def test_a_new_meter_is_not_a_lost_one():
    m, hw = make_meter()
    assert not m.state_lost and m.snapshot()["sf"] == 0


def test_damaged_config_json_never_resets_identity_or_sequences():
    m, hw = make_meter(meter_id="M000123", region=7)
    assert m.install(4242, 9, 5) == codes.ACCEPTED
    assert m.accept_command(41) == codes.ACCEPTED
    for text in ("{not json", json.dumps({"meter_id": 5, "region": "x", "install_seq": -1}), ""):
        _write(hw.state_dir + "/config.json", text.encode())
        m2, _ = _boot(hw.state_dir)
        c = m2.cfg
        assert (c["meter_id"], c["region"], c["account"], c["install_seq"]) == ("M000123", 9, 4242, 5), text
        assert m2.install(4242, 9, 5) == codes.USED, "an old install card must not bind again"
        assert m2.command_counter == 41 and m2.accept_command(41) == codes.OLD
    os.remove(hw.state_dir + "/config.json")
    m3, _ = _boot(hw.state_dir)
    assert m3.cfg["meter_id"] == "M000123", "the meter never becomes M000001"
    # a technician's change of identity goes into the state too
    assert m3.configure("meter_id", "M000124", "repl")[0] == codes.ACCEPTED
    os.remove(hw.state_dir + "/config.json")
    m4, _ = _boot(hw.state_dir)
    assert m4.cfg["meter_id"] == "M000124"


def test_the_command_counter_is_durable_before_it_is_accepted():
    m, hw = make_meter()
    real = m.store.save

    def full(state):
        raise OSError(28)
    m.store.save = full
    assert m.accept_command(5) == codes.STORAGE
    assert m.command_counter == 0
    m.store.save = real
    assert m.accept_command(5) == codes.ACCEPTED
    assert m.accept_command(5) == codes.OLD and m.accept_command(4) == codes.OLD
    assert m.accept_command(True) == codes.FORMAT and m.accept_command(1 << 63) == codes.RANGE


def _ms1(path, gen, state):
    body = json.dumps(state).encode()
    _write(path, b"MS1 %x %x %d\n" % (gen, crc32(body), len(body)) + body)


def test_first_boot_migrates_the_old_files():
    # what the previous firmware left: MS1 copies, identity in config.json,
    # the command counter in its own file
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    s = m.store.load()
    for k in ("idn", "cmdn", "tf", "tu", "lost"):
        s.pop(k)
    d = hw.state_dir
    for i in (0, 1):
        os.remove("%s/state.%d" % (d, i))
    _ms1(d + "/state.1", 3, s)
    _write(d + "/cmd_n", b"77")
    _write(d + "/config.json", json.dumps({"meter_id": "M000200", "region": 4, "account": 9,
                                           "install_seq": 3}).encode())
    m2, _ = _boot(d)
    assert m2.balance == 7000 and m2.command_counter == 77
    assert not m2.state_lost and not _events(m2, codes.EV_STATE_ROLLBACK)
    assert "cmd_n" not in os.listdir(d)
    os.remove(d + "/config.json")                 # from now on the state carries them
    m3, _ = _boot(d)
    c = m3.cfg
    assert (c["meter_id"], c["region"], c["account"], c["install_seq"]) == ("M000200", 4, 9, 3)
    assert m3.command_counter == 77 and m3.balance == 7000


def test_a_full_flash_keeps_the_volume_and_retries():
    m, hw = make_meter(reopen="auto", save_l=1)
    m.apply_credit("card", 1, 1, 50_000_000)
    real = m.store.save
    fails = [0]

    def full(state):
        fails[0] += 1
        raise OSError(28)
    m.store.save = full
    hw.world.flow.set_rate_lph(3600)              # 1 L/s
    run(m, hw, 30)                                # no poll raises: metering goes on
    assert m.volume.ml() >= 29_000
    assert len(_events(m, codes.EV_STORAGE_FAILED)) == 1     # once per failing run, not per poll
    assert m.snapshot()["sf"] & meter_mod.SF_STORAGE
    assert fails[0] >= 25                         # every poll retried
    m.store.save = real
    run(m, hw, 1)
    assert not m.save_failing
    assert m.store.load()["vol"] == m.volume.to_state()


def test_a_flash_too_full_for_the_new_copy_frees_the_one_it_replaces():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)
    import storage.state as st
    real_open = st.open if hasattr(st, "open") else open
    writes = [0]

    def tight_open(path, mode="r"):
        # room for one copy more only once the copy it replaces is gone
        names = os.listdir(hw.state_dir)
        if "w" in mode and path.endswith(".new") and "state.0" in names and "state.1" in names:
            writes[0] += 1
            raise OSError(28)
        return real_open(path, mode)
    st.open = tight_open
    try:
        assert m.apply_credit("card", 1, 2, 1000) == codes.ACCEPTED
    finally:
        del st.open
    assert writes[0] == 1
    m2, _ = _boot(hw.state_dir, make_cfg())
    assert m2.balance == 8000


def test_a_new_meter_with_a_bad_config_json_is_not_a_lost_one():
    from mptest import fresh_dir
    d = fresh_dir("newbad")
    _write(d + "/config.json", b"{broken")
    m, _ = _boot(d)
    assert [e for e in m.log.recent(8) if e[2] == codes.EV_CONFIG]
    assert not m.state_lost


def test_a_copy_with_a_bad_identity_applies_nothing_of_itself():
    m, hw = make_meter()
    m.apply_credit("card", 1, 1, 7000)           # older copy: 7000
    s = m.store.load()
    s["bal"] = 123
    s["idn"] = ["", -1, 0, 0]                    # passes its CRC, cannot be applied
    m.store.save(s)
    m2, _ = _boot(hw.state_dir, m.cfg)
    assert m2.balance == 7000 and m2.cfg["meter_id"] == m.cfg["meter_id"]
    os.remove("%s/state.%d" % (hw.state_dir, (m.store.generation - 1) & 1))   # only the bad one left
    m3, _ = _boot(hw.state_dir, m.cfg)
    assert m3.state_lost and m3.balance == 0, "half of an unusable copy was applied"


def test_after_a_total_loss_old_signed_commands_cannot_be_replayed():
    # the counter went with the state: until the floor, no command acts, and
    # the floor (the head-end's newest counter) closes every older one
    from commskit import make_link, command, recovery, send
    link, m, hw, b, rt = make_link()
    back = hw.clock.time() - 30 * 86400
    old = command(link, 5, "time", t=back)       # captured by the customer
    assert send(link, b, old)[-1]["code"] == codes.ACCEPTED
    assert send(link, b, command(link, 6, "time", t=back + 30 * 86400))[-1]["code"] == codes.ACCEPTED
    for i in (0, 1):
        os.remove("%s/state.%d" % (hw.state_dir, i))
    link2, m2, hw2, b2, rt2 = make_link(state_dir=hw.state_dir)
    assert m2.state_lost and m2.command_counter == 0
    t0 = hw2.clock.time()
    assert send(link2, b2, old)[-1]["code"] == codes.REFUSED
    assert hw2.clock.time() - t0 < 86400, "the replayed command set the clock back"
    rn = m2.snapshot()["rn"]
    floor = recovery(link2, 40, "floor", a=1, c=1, q=0, i=0, rn=rn)
    assert send(link2, b2, floor)[-1]["code"] == codes.ACCEPTED
    assert send(link2, b2, old)[-1]["code"] == codes.OLD
    assert send(link2, b2, command(link2, 41, "time", t=t0))[-1]["code"] == codes.ACCEPTED
