# Attacks on what the bootloader starts (docs/OTA.md §3 "at boot",
# SECURITY.md U19): after an update the other slot still holds the previous,
# office-signed image. Erasing otadata (the bootloader then starts ota_0) or
# putting back an older copy of it (flash encryption makes the copy
# ciphertext, not unusable) would run that older image above the meter's
# version floor: a downgrade without the signed rule.
from otakit import Reset, still_meters, credited, serve_until_reset, updated, version
import codes

TIMEOUT = 240


def _otadata(rig):
    with open(rig.ota_dir + "/otadata.bin", "rb") as f:
        return f.read()


def _put_otadata(rig, raw):
    with open(rig.ota_dir + "/otadata.bin", "wb") as f:
        f.write(raw)


def _boot_back(rig, want):
    """The boot after the attack starts the older slot; the meter must
    switch back to the validated one and reset, and stay there."""
    try:
        rig.boot()
        raise AssertionError("the older image runs above the floor: %s, %r" % (rig.running(), rig.ota_events()))
    except Reset:
        pass
    rig.boot()
    assert rig.running() == want, rig.running()
    rig.boot()                                     # marked valid again: no rollback at the next reset
    assert rig.running() == want, rig.running()


def test_erased_otadata_does_not_run_the_previous_image():
    rig = credited()
    updated(rig, 2)
    rig.boot()
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2
    _put_otadata(rig, b"\xff" * 64)               # both entries erased: the bootloader picks ota_0 (v0)
    _boot_back(rig, "ota_1")
    assert 2 << 16 | codes.OTA_WRONG_SLOT in rig.ota_events(), rig.ota_events()
    assert rig.m.fw_floor == 2 and still_meters(rig)


def test_erased_otadata_and_a_destroyed_progress_record_do_not_run_the_previous_image():
    # the slot to return to is not the OTA record's word alone: both its
    # copies garbled (ciphertext overwritten), the meter's state still says
    rig = credited()
    updated(rig, 2)
    _put_otadata(rig, b"\xff" * 64)
    for i in (0, 1):
        with open("%s/ota.%d" % (rig.state_dir, i), "wb") as f:
            f.write(b"\x5a" * 64)
    _boot_back(rig, "ota_1")
    assert rig.m.fw_floor == 2 and still_meters(rig)


def test_an_older_otadata_put_back_does_not_run_the_previous_image():
    rig = credited()
    updated(rig, 2)
    kept = _otadata(rig)                           # dumped while v2 ran in ota_1
    updated(rig, 3)
    rig.boot()
    assert rig.running() == "ota_0" and rig.m.fw_floor == 3
    _put_otadata(rig, kept)                        # the dump put back: ota_1 (v2) is the newest entry
    _boot_back(rig, "ota_0")
    assert 3 << 16 | codes.OTA_WRONG_SLOT in rig.ota_events(), rig.ota_events()
    assert rig.m.fw_floor == 3 and still_meters(rig)


def test_a_validated_image_that_no_longer_checks_leaves_the_older_one_metering_and_reported():
    rig = credited()
    updated(rig, 2)
    _put_otadata(rig, b"\xff" * 64)
    with open(rig.ota_dir + "/ota_1.bin", "r+b") as f:
        f.write(b"\xff" * 4096)                    # the validated slot erased too
    rig.boot()                                     # no reset loop: nothing valid to go back to
    assert rig.running() == "ota_0"
    assert 2 << 16 | codes.FORMAT << 8 | codes.OTA_WRONG_SLOT in rig.ota_events(), rig.ota_events()
    assert still_meters(rig)


def test_erased_otadata_during_a_download_boots_the_validated_image_and_the_update_goes_on():
    # ota_0 is half rewritten by the v3 download when otadata goes: the
    # bootloader finds no valid entry, ota_0 does not check, and (as the
    # ESP-IDF bootloader does) it tries the next slot
    rig = credited()
    updated(rig, 2)
    v3, msg = version(3)
    rig.offer(msg)
    rig.serve(v3, steps=72)
    assert 0 < rig.ota.updater.progress() < 100
    _put_otadata(rig, b"\xff" * 64)
    rig.boot()
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2, rig.running()
    assert still_meters(rig)
    serve_until_reset(rig, v3)
    rig.boot()
    rig.serve(v3, steps=40)
    assert rig.running() == "ota_0" and rig.m.fw_floor == 3
