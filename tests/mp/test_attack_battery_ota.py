# Attacks on a battery meter's firmware updates (firmware/ota/battery.py,
# docs/OTA.md §9, docs/SECURITY.md B17-): the customer holds the cell, the
# button, the Wi-Fi and the flash. The rig: tests/mp/batotakit.py.
import codes
import wake
from boards.unix_battery import Reset
from ota import updater as up
from meter import WHY_NONE
import otakit
from otakit import manifest_doc, signed
from batotakit import DAY, Rig

TIMEOUT = 240           # a test plays days of wakes


def _credit(m, litres=10_000):
    m.balance = litres * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()


def _switched(r, img):
    """The power-on window downloads img and switches; the reset boots the
    new image (its trial's wake comes next)."""
    r.he.image = img
    r.he.retained = signed(manifest_doc(img))
    try:
        wake.work(r.m, r.hw, r._link, None, "unix")
        raise AssertionError("no switch")
    except Reset:
        pass
    r.boot()
    assert r.plant.flash.running == "ota_1" and r.state() == up.SWITCHED


def test_attack_a_network_that_holds_each_connect_cannot_make_the_trial_refuse_the_version():
    # The customer's router holds each connect attempt 25 s (a TLS handshake
    # dribbled to the socket's timeout), then drops it: the trial's hash
    # waits on the held steps, its 300 s link wait outlasts the trial's
    # window, and the window ended with the image unconfirmed. The
    # bootloader's rollback at the next wake then counted as the image's
    # crash: twice, and the office's release was refused for good.
    r = Rig()
    _credit(r.m)
    _switched(r, otakit.image(200_000))
    r.he.up = False
    r.he.connect_ms = 25_000
    t0 = r.plant.clock.time()
    r.until(t0 + 3 * DAY)
    p = up.Updater(r.m, r.hw.partitions, "unix", r.d).p
    assert p.get("bad") != 2 and r.state() != up.IDLE, (p, r.ota_events())
    # each day's trial failed its link check and the old image's recheck
    # failed it too: the meter's network at fault (tamper), not the image
    steps = [e & 0xFF for e in r.ota_events()]
    assert steps.count(codes.OTA_TAMPER) >= 2, r.ota_events()
    # the network back: the next retry confirms the release
    r.he.up = True
    r.he.connect_ms = 0
    r.until(r.plant.clock.time() + 2 * DAY)
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()
