# Firmware updates on the unix board's modelled OTA flash (docs/OTA.md):
# the whole path, each refusal, a power cut at every flash write, at
# set_boot and during the first boot, a self-test failure ending in
# rollback. Every case ends with a meter that runs and meters.
from otakit import Rig, Reset, image, manifest_doc, signed, still_meters, SLOT
import codes
from boards.unix import ota_model
from ota import updater as up

TIMEOUT = 240


def _credit(rig):
    rig.m.apply_credit("mqtt", 1, rig.boots, 100_000)
    rig.m.confirm()                 # the customer's tap: the valve opens


def _download(rig, img, msg=None):
    """Offer the manifest and serve the image until set_boot resets."""
    rig.offer(msg or signed(manifest_doc(img)))
    try:
        rig.serve(img)
    except Reset:
        return True
    return False


def _update(rig, img, msg=None):
    assert _download(rig, img, msg), rig.ota_events()
    rig.boot()                      # the new image's first boot: trial
    assert rig.ota.updater.state == up.TRIAL
    try:
        rig.serve(img, steps=20)
    except Reset:
        rig.boot()
        return False
    return True


def test_an_update_downloads_switches_confirms_and_raises_the_floor():
    rig = Rig()
    _credit(rig)
    img = image()
    assert rig.running() == "ota_0"
    assert _update(rig, img)
    assert rig.running() == "ota_1"
    assert rig.m.fw_floor == 2
    assert rig.flash.entries()[0][1] == ota_model.ST_VALID or rig.flash.entries()[1][1] == ota_model.ST_VALID
    steps = [e & 0xFF for e in rig.ota_events()]
    assert steps == [codes.OTA_RUNNING, codes.OTA_ACCEPTED, codes.OTA_SWITCHED, codes.OTA_TRIAL,
                     codes.OTA_RUNNING, codes.OTA_VALID], steps
    assert rig.ota_events(codes.OTA_RUNNING)[-1] >> 16 == 2     # the head-end learns the version
    # confirmed: another reset stays on the new image, its state intact
    bal = rig.m.balance
    rig.boot()
    assert rig.running() == "ota_1" and rig.m.balance == bal and rig.m.fw_floor == 2
    assert still_meters(rig)


def test_a_manifest_with_a_forged_signature_is_refused():
    rig = Rig()
    _credit(rig)
    img = image()
    forged = signed(manifest_doc(img), d=12345)    # signed by a key the meter does not hold
    rig.offer(forged)
    rig.serve(img, steps=5)
    assert rig.ota.updater.state == up.IDLE
    assert rig.ota_events(codes.OTA_REFUSED) == [2 << 16 | codes.SIGNATURE << 8 | codes.OTA_REFUSED]
    assert rig.ota_events(codes.OTA_RUNNING) == [0 << 16 | up.IDLE << 8 | codes.OTA_RUNNING]
    assert not [p for p in rig.b.published if p[0] == rig.link.t_ota_req]
    assert rig.flash.block_writes == 0 and still_meters(rig)


def test_a_body_changed_after_signing_is_refused():
    rig = Rig()
    img = image()
    msg = signed(manifest_doc(img, bat=1000))
    tampered = msg.replace(b"1000", b"0000")     # the battery minimum taken out
    assert tampered != msg
    rig.offer(tampered)
    rig.serve(img, steps=5)
    assert rig.ota_events()[-1] & 0xFFFF == codes.SIGNATURE << 8 | codes.OTA_REFUSED


def test_an_image_for_another_board_is_refused_before_the_signature():
    rig = Rig()
    img = image()
    rig.offer(signed(manifest_doc(img, board="esp32c3_devkitm")))
    rig.serve(img, steps=5)
    assert rig.ota_events()[-1] & 0xFFFF == codes.WRONG_BOARD << 8 | codes.OTA_REFUSED
    assert rig.ota.updater.state == up.IDLE and rig.flash.block_writes == 0


def test_a_downgrade_is_refused_even_when_signed_and_flagged_emergency():
    rig = Rig()
    _credit(rig)
    assert _update(rig, image())            # version 2 confirmed: floor 2
    for v, extra in ((2, {}), (1, {}), (1, {"rb": 1})):
        rig.offer(signed(manifest_doc(image(seed=b"old"), v=v, **extra)))
        rig.serve(image(), steps=3)
        assert rig.ota_events()[-1] == v << 16 | codes.OLD << 8 | codes.OTA_REFUSED, (v, extra)
    # the documented rollback: the old code re-issued under a new version
    old = image(seed=b"old")
    assert _update(rig, old, signed(manifest_doc(old, v=3, rb=1)))
    assert rig.m.fw_floor == 3 and rig.running() == "ota_0"


def test_a_larger_image_than_the_slot_is_refused():
    rig = Rig()
    big = image(SLOT)      # header and hash make it longer than the slot
    rig.offer(signed(manifest_doc(big)))
    rig.serve(big, steps=3)
    assert rig.ota_events()[-1] & 0xFFFF == codes.RANGE << 8 | codes.OTA_REFUSED


def test_a_corrupt_chunk_is_fetched_again_and_a_corrupt_image_never_boots():
    rig = Rig()
    _credit(rig)
    img = image()
    bad = bytearray(img)
    bad[20000] ^= 0x55                 # one byte of the second chunk, in transit
    # every answer carries the bad byte: three failures abandon the image
    rig.offer(signed(manifest_doc(img)))
    rig.serve(bytes(bad))
    steps = [e & 0xFF for e in rig.ota_events()]
    assert steps.count(codes.OTA_CHUNK_BAD) == up.MAX_CHUNK_RETRIES, steps
    assert steps[-1] == codes.OTA_IMAGE_BAD and rig.ota.updater.state == up.IDLE
    rig.boot()
    assert rig.running() == "ota_0" and still_meters(rig)
    # a manifest whose chunk digests match a different whole-image hash:
    # every chunk passes, the read-back of the slot does not
    rig2 = Rig()
    _credit(rig2)
    import json
    d = json.loads(manifest_doc(img))
    d["h"] = "00" * 32
    rig2.offer(signed(json.dumps(d).encode()))
    rig2.serve(img)
    assert rig2.ota_events()[-1] == 2 << 16 | codes.CRC << 8 | codes.OTA_IMAGE_BAD
    assert rig2.flash.entries() == [(0, ota_model.ST_UNDEFINED)] * 2   # set_boot never ran
    assert still_meters(rig2)


def test_a_power_cut_at_every_flash_write_resumes_and_ends_confirmed():
    img = image()
    probe = Rig()
    _credit(probe)
    assert _download(probe, img)
    writes = probe.flash.ops          # erases, programs and the set_boot write
    assert writes == 2 * ((len(img) + 4095) // 4096) + 1, writes
    for cut in range(writes):
        rig = Rig()
        _credit(rig)
        rig.flash.cut_after = cut
        rig.offer(signed(manifest_doc(img)))
        try:
            rig.serve(img)
            raise AssertionError("no cut at %d" % cut)
        except ota_model.PowerCut:
            pass
        rig.boot()                    # power back: resume from the last chunk
        assert rig.running() == "ota_0", cut
        assert still_meters(rig), cut
        assert rig.ota.updater.state in (up.DOWNLOAD, up.VERIFY), (cut, rig.ota.updater.state)
        try:
            rig.serve(img)
        except Reset:
            pass
        rig.boot()
        assert rig.running() == "ota_1", cut
        try:
            rig.serve(img, steps=20)
        except Reset:
            raise AssertionError("trial failed after cut %d" % cut)
        assert rig.m.fw_floor == 2, cut
        # a resume re-fetches at most the chunk the cut was in
        assert rig.ota_events(codes.OTA_RESUMED) or cut >= writes - 1 or cut == 0, cut


def test_a_power_cut_during_the_first_boot_returns_to_the_old_image_then_retries():
    rig = Rig()
    _credit(rig)
    img = image()
    assert _download(rig, img)
    rig.boot()                         # trial begins ...
    assert rig.running() == "ota_1" and rig.ota.updater.state == up.TRIAL
    rig.boot()                         # ... and the power goes before the self-test
    assert rig.running() == "ota_0"    # the bootloader rolled back
    assert rig.ota_events(codes.OTA_ROLLED_BACK)
    assert still_meters(rig)
    try:
        rig.serve(img)                 # the image is still in its slot: checked again, switched
    except Reset:
        pass
    rig.boot()
    assert rig.running() == "ota_1"
    rig.serve(img, steps=20)
    assert rig.m.fw_floor == 2 and rig.ota.updater.state == up.IDLE


def test_a_power_cut_while_marking_valid_keeps_a_meter_that_ends_confirmed():
    rig = Rig()
    _credit(rig)
    img = image()
    assert _download(rig, img)
    rig.boot()
    rig.flash.cut_after = rig.flash.ops          # the otadata write of mark_app_valid
    try:
        rig.serve(img, steps=20)
        raise AssertionError("no cut")
    except ota_model.PowerCut:
        pass
    assert rig.m.fw_floor == 2                  # the floor was durable first
    rig.boot()
    assert rig.running() == "ota_0" and still_meters(rig)
    try:
        rig.serve(img)
    except Reset:
        pass
    rig.boot()
    rig.serve(img, steps=20)
    assert rig.running() == "ota_1" and rig.ota.updater.state == up.IDLE
    rig.boot()
    assert rig.running() == "ota_1"


def test_a_self_test_failure_rolls_back_and_the_version_is_refused():
    rig = Rig()
    _credit(rig)
    bal = rig.m.balance
    img = image(fault=ota_model.FAULT_CARD)     # its card driver is broken
    assert _download(rig, img)
    rig.boot()
    assert rig.running() == "ota_1"
    try:
        rig.serve(img, steps=20)
        raise AssertionError("the broken image confirmed itself")
    except Reset:
        pass
    fails = rig.ota_events(codes.OTA_SELFTEST_FAILED)
    assert fails == [2 << 16 | 4 << 8 | codes.OTA_SELFTEST_FAILED], fails    # selftest.CARD
    rig.boot()
    assert rig.running() == "ota_0"
    assert rig.m.balance == bal and rig.m.fw_floor == 0
    # a failed self-test is not tried again: the version is given up at once
    assert rig.ota.updater.state == up.IDLE
    assert rig.ota_events(codes.OTA_REFUSED)[-1] == 2 << 16 | codes.REFUSED << 8 | codes.OTA_REFUSED
    rig.offer(signed(manifest_doc(img)))         # the same version again: refused
    rig.serve(img, steps=3)
    assert rig.ota_events()[-1] == 2 << 16 | codes.OLD << 8 | codes.OTA_REFUSED
    assert rig.running() == "ota_0" and still_meters(rig)


def test_a_trial_cut_short_twice_gives_the_version_up():
    rig = Rig()
    _credit(rig)
    img = image()
    assert _download(rig, img)
    for trial in range(up.MAX_TRIALS):
        rig.boot()                       # the trial starts, the power goes
        assert rig.running() == "ota_1" and rig.ota.updater.state == up.TRIAL
        rig.boot()
        assert rig.running() == "ota_0", trial
        if trial + 1 < up.MAX_TRIALS:
            try:
                rig.serve(img)           # checked again, switched again
            except Reset:
                pass
    assert rig.ota.updater.state == up.IDLE
    assert rig.ota_events(codes.OTA_ROLLED_BACK)[-1] >> 8 & 0xFF == up.MAX_TRIALS
    assert still_meters(rig)


def test_downloading_goes_on_beside_metering_and_loses_no_pulse():
    rig = Rig()
    _credit(rig)
    img = image()
    rig.offer(signed(manifest_doc(img)))
    flow = rig.hw.world.flow
    try:
        rig.serve(img, flow_lph=18_000)     # 5 L/s, K = 1/L: a pulse every 200 ms
    except Reset:
        pass
    rig.m.poll()
    assert flow.emitted >= 5, flow.emitted
    assert rig.m.volume.ml() == flow.emitted * 1000, (rig.m.volume.ml(), flow.emitted)


def test_a_battery_below_the_level_defers_the_update():
    rig = Rig()

    class Flat:
        mv = 3000

        def millivolts(self):
            return self.mv
    rig.ota.updater.battery = Flat()
    img = image()
    rig.offer(signed(manifest_doc(img, bat=3300)))
    rig.serve(img, steps=3)
    assert rig.ota_events()[-1] & 0xFFFF == codes.BATTERY_LOW << 8 | codes.OTA_REFUSED
    assert rig.ota.updater.state == up.IDLE
    rig.ota.updater.battery.mv = 3400
    rig.offer(signed(manifest_doc(img, bat=3300)))    # the retained manifest, next connection
    try:
        rig.serve(img)
    except Reset:
        pass
    assert rig.ota.updater.state == up.SWITCHED


def test_a_meter_outside_the_rollout_group_waits():
    from ota import manifest
    rig = Rig()
    b = manifest.bucket(rig.m.cfg["meter_id"])
    img = image()
    for g, pct in ((1, 1), (2, 10), (3, 100)):
        rig.offer(signed(manifest_doc(img, g=g)))
        rig.serve(img, steps=2)
        want = codes.ACCEPTED if b < pct else codes.REFUSED
        got = rig.ota.updater.state != up.IDLE
        assert got == (want == codes.ACCEPTED), (g, b)


def test_state_fields_of_a_newer_image_survive_the_older_image_that_restores_them():
    # a newer image wrote a field this firmware does not know; after a
    # rollback this firmware restores the state, meters, saves: the field is
    # still there for the newer image, and every known field is current
    rig = Rig()
    _credit(rig)
    s = rig.m.store.load()
    s["zz"] = {"from": "v3", "n": 7}
    rig.m.store.save(s)
    rig.boot()
    assert rig.m.balance == s["bal"]
    assert still_meters(rig)
    rig.m.save()
    s2 = rig.m.store.load()
    assert s2["zz"] == {"from": "v3", "n": 7}
    assert s2["bal"] == rig.m.balance < s["bal"]
    assert "led" not in s2


def test_a_block_fetched_again_is_erased_again():
    # chunks of one block: a bad chunk is the block just programmed; writing
    # it again without an erase would AND old and new bits (NOR flash, as
    # the model stores it) and it could never match
    rig = Rig()
    img = image(12000)
    bad = bytearray(img)
    bad[5000] ^= 0xFF
    rig.offer(signed(manifest_doc(img, cs=4096)))
    for _ in range(40):                 # corrupt answers until a chunk fails once
        rig.serve(bytes(bad), steps=1)
        if rig.ota_events(codes.OTA_CHUNK_BAD):
            break
    assert rig.ota_events(codes.OTA_CHUNK_BAD), rig.ota_events()
    try:
        rig.serve(img)
    except Reset:
        pass
    assert rig.ota.updater.state == up.SWITCHED
    assert rig.flash.erases == rig.flash.block_writes > 3     # every write had its erase
