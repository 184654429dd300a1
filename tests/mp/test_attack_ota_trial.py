# Attacks on the new image's first boot (docs/OTA.md §3, SECURITY.md U18):
# the customer keeps the network down (router off, antenna off) so the
# trial's link check never runs, hoping the unconfirmed image keeps running
# for good, or that an image whose link is broken is never rolled back.
from otakit import Rig, Reset, image, manifest_doc, signed, still_meters, credit, download
import codes
from ota import selftest
from ota import updater as up
from ota import TRIAL_WAIT_MS

TIMEOUT = 240


def test_a_trial_with_the_network_kept_down_fails_its_link_check_and_rolls_back():
    rig = Rig()
    credit(rig)
    img = image(seed=b"v2")
    assert download(rig, img, signed(manifest_doc(img, v=2)))
    rig.boot()                                   # the new image's first boot
    assert rig.ota.updater.state == up.TRIAL and rig.running() == "ota_1"
    rig.b.up = False                             # no connection, ever, on this image
    steps = TRIAL_WAIT_MS // 100 + 100           # 300 s of the trial's wait, and some
    w0 = rig.m.store.writes
    try:
        rig.serve(img, steps=steps)
        raise AssertionError("the unconfirmed image kept running without its link check: %r"
                             % rig.ota_events())
    except Reset:
        pass
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
