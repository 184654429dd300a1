# Attack on the update slot's flash (docs/OTA.md §3, SECURITY.md U25): a
# download resumes at the start of its chunk, erasing again every block of
# the chunk it had programmed. A relay that cuts the power every few seconds
# would erase the same few blocks thousands of times a day, until the slot
# wears out and no update can ever land there.
from otakit import image, manifest_doc, signed, still_meters, credited, serve_until_reset
from ota import updater as up

TIMEOUT = 240


def test_power_cycling_a_download_does_not_wear_out_the_slot():
    rig = credited()
    img = image(n=60000, seed=b"v2")                  # 4 chunks of 16 KiB, 15 blocks
    rig.offer(signed(manifest_doc(img, v=2)))
    rig.serve(img, steps=70)                          # the signature, then the first blocks
    assert rig.ota.updater.state == up.DOWNLOAD
    erases = rig.flash.erases
    for _ in range(30):                               # the relay: a few seconds of power at a time
        rig.boot()
        rig.serve(img, steps=6)                       # ~3 blocks of the chunk erased and programmed
        erases += rig.flash.erases
        assert still_meters(rig, litres=1)
    # every resume at the same chunk beyond up.MAX_RESUMES waits RESUME_HOLD_MS first
    assert erases <= 4 * (up.MAX_RESUMES + 2), erases
    rig.boot()                                        # the relay gone: the download goes on after the hold
    rig.rt.ms += up.RESUME_HOLD_MS
    serve_until_reset(rig, img, "never switched")
    rig.boot()
    rig.serve(img, steps=40)
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2 and still_meters(rig)
