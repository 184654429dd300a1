# Attacks on the new image's first boot (docs/OTA.md §3, SECURITY.md U18):
# the customer keeps the network down (router off, antenna off) so the
# trial's link check never runs, hoping the unconfirmed image keeps running
# for good, or that an image whose link is broken is never rolled back.
from otakit import Reset, still_meters, credited, downloaded, serve_until_reset
import codes
from ota import selftest
from ota import updater as up
from ota import TRIAL_WAIT_MS

TIMEOUT = 240


def test_a_trial_with_the_network_kept_down_fails_its_link_check_and_rolls_back():
    rig = credited()
    img, _ = downloaded(rig, 2)
    rig.boot()                                   # the new image's first boot
    assert rig.ota.updater.state == up.TRIAL and rig.running() == "ota_1"
    rig.b.up = False                             # no connection, ever, on this image
    steps = TRIAL_WAIT_MS // 100 + 100           # 300 s of the trial's wait, and some
    w0 = rig.m.store.writes
    serve_until_reset(rig, img, "the unconfirmed image kept running without its link check", steps=steps)
    # the self-test (its state check saves) ran once, not at every step of the wait
    assert rig.m.store.writes - w0 <= 8, rig.m.store.writes - w0
    assert 2 << 16 | selftest.LINK << 8 | codes.OTA_SELFTEST_FAILED in rig.ota_events()
    assert rig.m.fw_floor == 0
    rig.boot()                                   # the bootloader returns to the old image
    assert rig.running() == "ota_0" and rig.ota.updater.state == up.RECHECK
    rig.b.up = False                             # still down: the old image fails the link too
    rig.serve(img, steps=steps)
    assert rig.ota_events()[-1] == 2 << 16 | selftest.LINK << 8 | codes.OTA_TAMPER, rig.ota_events()
    assert rig.ota.updater.state == up.VERIFY and still_meters(rig)


def test_power_cuts_at_every_first_boot_never_refuse_the_version():
    # the customer switches the power off during each trial of the new image
    # (the security fix) so that it is given up and the old code stays
    rig = credited()
    img, _ = downloaded(rig, 2)
    for cut in range(up.MAX_TRIALS + 2):
        rig.boot()                               # the new image's trial ...
        assert rig.running() == "ota_1" and rig.ota.updater.state == up.TRIAL, cut
        rig.boot()                               # ... and the power switch
        assert rig.running() == "ota_0" and rig.ota.updater.state == up.VERIFY, (cut, rig.ota_events())
        assert still_meters(rig)
        if cut >= up.MAX_TRIALS:
            rig.serve(img, steps=40)             # retried once a day from then on, not at once
            assert rig.ota.updater.state == up.VERIFY, cut
            rig.rt.ms += up.RETRY_MS
        serve_until_reset(rig, img, "not switched again after cut %d" % cut)
    assert 2 << 16 | codes.REFUSED << 8 | codes.OTA_REFUSED not in rig.ota_events()
    assert set(rig.ota_events(codes.OTA_ROLLED_BACK)) == {2 << 16 | codes.OTA_ROLLED_BACK}   # detail 0: power
    rig.boot()                                   # the power stays on this time
    rig.serve(img, steps=40)
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2 and rig.ota.updater.state == up.IDLE


def test_a_new_image_that_cannot_make_its_link_rolls_back_at_once():
    # the new image's link does not even start (its MQTT settings, its
    # transport): without a link object no link step ever runs its trial
    rig = credited()
    img, _ = downloaded(rig, 2)
    try:
        rig.boot(no_link=True)
        raise AssertionError("the unconfirmed image runs without a link: %r" % rig.ota_events())
    except Reset:
        pass
    assert 2 << 16 | selftest.LINK << 8 | codes.OTA_SELFTEST_FAILED in rig.ota_events()
    rig.boot()
    assert rig.running() == "ota_0" and rig.ota.updater.state == up.RECHECK
    rig.serve(img, steps=5)                      # the old image's link is up: the image's fault
    assert rig.ota.updater.state == up.VERIFY and rig.ota.updater.p.get("pf") == 1
    assert rig.m.fw_floor == 0 and still_meters(rig)
