# Attack: halt a rollout while meters are mid-download (docs/OTA.md §3,
# SECURITY.md U10). A higher signed version replaces the unfinished
# download; a download without pieces for STALL_MS is given up, its version
# not refused.
from otakit import Rig, image, manifest_doc, signed, still_meters, credit, update
import codes
from ota import updater as up

TIMEOUT = 240


def _halted_mid_download(rig):
    bad = image(seed=b"v2")
    msg = signed(manifest_doc(bad, v=2))
    rig.offer(msg)
    rig.serve(bad, steps=72)                 # signature check, then a few blocks
    u = rig.ota.updater
    assert u.state == up.DOWNLOAD and 0 < u.progress() < 100, (u.state, u.progress())
    rig.offer(b"")                           # halted: retained manifest cleared, requests unanswered
    rig.serve(b"", steps=50, poll=False)
    return bad, msg


def test_the_next_release_replaces_a_download_stranded_by_a_halt():
    rig = Rig()
    credit(rig)
    _halted_mid_download(rig)
    fix = image(seed=b"v3")
    assert update(rig, fix, signed(manifest_doc(fix, v=3, rb=1)))
    assert rig.m.fw_floor == 3 and rig.running() == "ota_1" and still_meters(rig)


def test_a_download_without_pieces_is_given_up_and_its_version_kept():
    rig = Rig()
    credit(rig)
    bad, msg = _halted_mid_download(rig)
    rig.rt.ms += up.STALL_MS + 1000
    rig.serve(b"", steps=3, poll=False)
    u = rig.ota.updater
    assert u.state == up.IDLE
    assert rig.ota_events()[-1] == 2 << 16 | codes.TIMEOUT << 8 | codes.OTA_REFUSED
    assert update(rig, bad, msg)             # the rollout resumed: the same version is taken
    assert rig.m.fw_floor == 2 and still_meters(rig)
