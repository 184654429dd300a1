# Attacks on the firmware update path (docs/OTA.md, docs/SECURITY.md
# "Firmware updates"): forged, altered, foreign, old, oversized and corrupt
# images. Each is refused before anything becomes bootable, and the meter
# runs and meters after it.
from otakit import Rig, serve_until_reset, image, manifest_doc, signed, still_meters, SLOT, credit, update
import codes
from boards.unix import ota_model
from ota import updater as up

TIMEOUT = 120

def test_a_manifest_with_a_forged_signature_is_refused():
    rig = Rig()
    credit(rig)
    img = image()
    forged = signed(manifest_doc(img), d=12345)    # signed by a key the meter does not hold
    rig.offer(forged)
    rig.serve(img, steps=80)            # the signature is checked in 64 slices, one a step
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
    rig.serve(img, steps=80)
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
    credit(rig)
    assert update(rig, image())            # version 2 confirmed: floor 2
    for v, extra in ((2, {}), (1, {}), (1, {"rb": 1})):
        rig.offer(signed(manifest_doc(image(seed=b"old"), v=v, **extra)))
        rig.serve(image(), steps=3)
        assert rig.ota_events()[-1] == v << 16 | codes.OLD << 8 | codes.OTA_REFUSED, (v, extra)
    # the documented rollback: the old code re-issued under a new version
    old = image(seed=b"old")
    assert update(rig, old, signed(manifest_doc(old, v=3, rb=1)))
    assert rig.m.fw_floor == 3 and rig.running() == "ota_0"


def test_a_larger_image_than_the_slot_is_refused():
    rig = Rig()
    big = image(SLOT)      # header and hash make it longer than the slot
    rig.offer(signed(manifest_doc(big)))
    rig.serve(big, steps=3)
    assert rig.ota_events()[-1] & 0xFFFF == codes.RANGE << 8 | codes.OTA_REFUSED


def test_a_corrupt_chunk_is_fetched_again_and_a_corrupt_image_never_boots():
    rig = Rig()
    credit(rig)
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
    credit(rig2)
    import json
    d = json.loads(manifest_doc(img))
    d["h"] = "00" * 32
    rig2.offer(signed(json.dumps(d).encode()))
    rig2.serve(img)
    assert rig2.ota_events()[-1] == 2 << 16 | codes.CRC << 8 | codes.OTA_IMAGE_BAD
    assert rig2.flash.entries() == [(0, ota_model.ST_UNDEFINED)] * 2   # set_boot never ran
    assert still_meters(rig2)



def test_a_forged_manifest_is_verified_in_slices_and_once():
    # the verify (seconds on an ESP32) is spread over link steps, never one
    # long step; the same forgery retained on the broker is not verified again
    rig = Rig()
    img = image()
    forged = signed(manifest_doc(img), d=4242)
    u = rig.ota.updater
    rig.ota.on_message(forged)               # as the link hands it over
    slices = 0
    while u.checking:
        u.step()
        slices += 1
    assert slices >= 128 // up.SIG_WINDOWS, slices   # 2 of the 128 windows a step
    assert rig.ota_events(codes.OTA_REFUSED)[-1] & 0xFFFF == codes.SIGNATURE << 8 | codes.OTA_REFUSED
    n = len(rig.ota_events())
    rig.ota.on_message(forged)               # the next connection: the retained copy again
    assert not u.checking and len(rig.ota_events()) == n   # refused at once, logged once



def test_the_office_manifest_arriving_during_a_forgery_check_is_not_lost():
    rig = Rig()
    credit(rig)
    img = image()
    rig.ota.on_message(signed(manifest_doc(img), d=777))     # a forgery first ...
    rig.ota.on_message(signed(manifest_doc(img)))            # ... the office's right behind it
    serve_until_reset(rig, img)
    steps = [e & 0xFF for e in rig.ota_events()]
    assert codes.OTA_REFUSED in steps and steps[-1] == codes.OTA_SWITCHED, steps
