# Attacks on the OTA progress record (docs/OTA.md §3, SECURITY.md U7, U8):
# the customer rewrites it (CRC only) on their own flash with a genuinely
# signed manifest captured from the wire.
from otakit import image, manifest_doc, signed, still_meters, credited, serve_until_reset, update, updated, version
import codes
from ota import updater as up
from storage.state import StateStore

TIMEOUT = 240


def test_a_rewritten_record_cannot_take_the_meter_below_its_floor():
    rig = credited()
    old_img, old_msg = version(2)                   # captured from the wire (retained manifest)
    assert update(rig, old_img, old_msg)            # v2 valid, floor 2, running ota_1
    updated(rig, 3)
    assert rig.m.fw_floor == 3 and rig.running() == "ota_0"
    # ota_1 still holds the v2 image: the record says "verify it"
    body, sig = old_msg[:-129], old_msg[-128:]
    ss = StateStore(rig.state_dir, "ota")
    ss.load()                                        # the next save is then the newest copy
    ss.save(
        {"st": up.VERIFY, "v": 2, "m": body.decode(), "sig": sig.decode(), "o": 0,
         "slot": "ota_1", "bad": 0, "rv": 3})
    rig.boot()
    assert rig.ota.updater.state == up.IDLE, (rig.ota.updater.p, rig.ota_events())
    assert 2 << 16 | codes.OLD << 8 | codes.OTA_REFUSED in rig.ota_events()[-3:], rig.ota_events()
    rig.serve(old_img, steps=50)                     # no set_boot (no Reset)
    rig.boot()
    assert rig.running() == "ota_0" and rig.m.fw_floor == 3
    assert 2 << 16 | codes.OTA_VALID not in rig.ota_events()[-6:]
    assert rig.ota.updater.running_version() == 3 and still_meters(rig)


def test_a_fake_trial_record_confirms_nothing_while_the_old_image_runs():
    # the current rollout's manifest (v5), written into the record as
    # "switched" to the slot that runs now
    rig = credited()
    new_img = image(seed=b"v5-fix")
    msg = signed(manifest_doc(new_img, v=5))
    body, sig = msg[:-129], msg[-128:]
    ss = StateStore(rig.state_dir, "ota")
    ss.load()
    ss.save(
        {"st": up.SWITCHED, "v": 5, "m": body.decode(), "sig": sig.decode(), "o": len(new_img),
         "slot": rig.running(), "bad": 0, "rv": 0})
    rig.boot()
    assert rig.ota.updater.state == up.TRIAL
    if serve_until_reset(rig, new_img, steps=20):
        rig.boot()
    assert rig.running() == "ota_0" and rig.m.fw_floor == 0
    assert 5 << 16 | codes.OTA_VALID not in rig.ota_events()
    assert 5 << 16 | codes.CRC << 8 | codes.OTA_IMAGE_BAD in rig.ota_events()   # the running image is not v5's
    # the real update still comes through
    assert update(rig, new_img, msg)
    assert rig.m.fw_floor == 5 and rig.running() == "ota_1" and still_meters(rig)
