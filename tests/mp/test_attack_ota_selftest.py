# Attack (no flash access): unplug the card reader's cable during a new
# image's first boot, so its self-test fails and the version would be
# refused for good (docs/OTA.md §3, SECURITY.md U9). The old image runs the
# failed check again: failing there too is the meter's hardware (OTA_TAMPER),
# and in any case the trial is tried again a day later.
from otakit import still_meters, credited, download, downloaded, serve_until_reset
import codes
from ota import updater as up
from boards.unix.spi import SimSPI

TIMEOUT = 240


def _trial_with_reader_unplugged(rig, img):
    rig.boot()
    assert rig.ota.updater.state == up.TRIAL
    rig.hw.card_spi = SimSPI(1, 1_000_000, rig.hw.clock)    # nothing answers on the bus: 0xFF
    serve_until_reset(rig, img, "confirmed", steps=20)
    rig.boot()


def _next_day_confirms(rig, img):
    rig.rt.ms += up.RETRY_MS
    serve_until_reset(rig, img, "not tried again", steps=40)
    rig.boot()
    assert rig.ota.updater.state == up.TRIAL
    rig.serve(img, steps=40)
    rig.boot()


def test_a_reader_unplugged_at_the_first_boot_only_delays_the_update():
    rig = credited()
    img, _ = downloaded(rig, 2)
    _trial_with_reader_unplugged(rig, img)                   # plugged back before the old image's check
    rig.serve(img, steps=5)
    assert rig.running() == "ota_0" and rig.ota.updater.state == up.VERIFY   # kept, not refused
    _next_day_confirms(rig, img)
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2 and still_meters(rig)


def test_a_reader_that_stays_unplugged_is_reported_as_tamper_not_as_the_image():
    rig = credited()
    img, _ = downloaded(rig, 2)
    _trial_with_reader_unplugged(rig, img)
    rig.hw.card_spi = SimSPI(1, 1_000_000, rig.hw.clock)    # still unplugged under the old image
    rig.serve(img, steps=5)
    assert rig.ota_events()[-1] == 2 << 16 | 4 << 8 | codes.OTA_TAMPER       # selftest.CARD
    assert 2 << 16 | codes.REFUSED << 8 | codes.OTA_REFUSED not in rig.ota_events()
    rig.boot()                                               # reader back
    _next_day_confirms(rig, img)
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2 and still_meters(rig)


def test_a_halt_cancels_the_held_retry_without_refusing_the_version():
    rig = credited()
    img, msg = downloaded(rig, 2)
    _trial_with_reader_unplugged(rig, img)
    rig.serve(img, steps=5)
    assert rig.ota.updater.state == up.VERIFY
    rig.offer(b"")                                           # the rollout halted
    rig.serve(img, steps=5)
    assert rig.ota.updater.state == up.IDLE
    rig.rt.ms += up.RETRY_MS
    rig.serve(img, steps=40)                                 # no switch: nothing is retried
    assert rig.running() == "ota_0" and rig.m.fw_floor == 0
    assert download(rig, img, msg)                           # the rollout resumed: taken again
    assert still_meters(rig)
