# Attacks on a battery meter's firmware updates (firmware/ota/battery.py,
# docs/OTA.md §9, docs/SECURITY.md B17-): the customer holds the cell, the
# button, the Wi-Fi and the flash. The rig: tests/mp/batotakit.py.
import codes
import wake
from boards.unix_battery import Reset
from ota import updater as up
from meter import WHY_NONE
from power import RADIO_MA
import otakit
from otakit import manifest_doc, signed
from batotakit import DAY, Rig
from ota import battery as ob

TIMEOUT = 240           # a test plays days of wakes


def _credit(m, litres=10_000):
    m.balance = litres * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()


class Pulled(BaseException):
    """The customer pulls the cell: the wake stops where it is."""


def _wake_pulled_at(r, ms):
    """A wake (and the wakes its resets chain) whose cell the customer pulls
    ms into it, or right after it when it is over sooner, then puts back: a
    power-on. Returns (pulled, ran): whether the pull cut the wake, and the
    ms from its start to the pull."""
    c = r.plant.clock
    at = c.now_ms() + ms
    own = type(c).delay_us
    armed = [True]

    def delay_us(us):
        own(c, us)
        if armed[0] and c.now_ms() >= at:
            armed[0] = False
            raise Pulled()

    c.delay_us = delay_us
    t = c.now_ms()
    pulled = False
    try:
        while True:
            try:
                wake.work(r.m, r.hw, r._link, None, "unix")
                break
            except Reset:
                r.boot()
    except Pulled:
        pulled = True
    finally:
        armed[0] = False
    ran = c.now_ms() - t
    r.plant.brown_out()
    r.plant.clock.advance(10_000)
    r.boot()
    return pulled, ran


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


def test_attack_pulling_the_cell_in_each_trial_window_is_still_counted():
    # A trial's window keeps the radio on up to TRIAL_MAX_MS (330 s) while
    # the self-test waits for the link (the customer's network down). The
    # wake's charge is counted at its end: the customer pulls the cell at
    # 290 s, and the power-on retries the trial at once twice, then daily,
    # each pull 35 As of radio the charge count never saw (the valve's
    # reserve spent uncounted in weeks, the latching valve then open on an
    # empty cell)
    r = Rig()
    _credit(r.m)
    _switched(r, otakit.image(20_000))
    used = r.m.cell.used
    r.he.up = False
    pulled, ran = _wake_pulled_at(r, 290_000)
    assert pulled and r.hw.wake_reason == "power"
    r.he.up = True
    n = len(r.radio)
    r.wake()                              # the power-on: switched again, confirmed
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()
    radio = ran - 1000 + sum(ms for _, ms in r.radio[n:])
    assert r.m.cell.used - used >= radio * RADIO_MA, (r.m.cell.used - used, radio * RADIO_MA)


def test_attack_pulling_the_cell_in_each_download_window_neither_renews_the_allowance_nor_escapes_the_count():
    # A download keeps its window open until the day's allowance (120 s) is
    # spent; the allowance and the wake's charge were written at the
    # window's end. The customer pulls the cell at 110 s, and the power-on's
    # window finds the allowance whole and the charge not counted: three
    # such pulls (the resumes' hold starts at the fourth) were 330 s of
    # radio in a day, none of it in the count
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 300                       # slow: a window ends inside the download
    r.he.retained = signed(manifest_doc(img))
    used = r.m.cell.used
    pulled, short = [], []
    for _ in range(3):
        cut, ran = _wake_pulled_at(r, 110_000)
        (pulled if cut else short).append(ran)
    r.he.retained = None
    r.he.rate = None
    assert r.state() == up.DOWNLOAD, r.ota_events()
    # one window of the day had the update's allowance; the power-ons after
    # it had the usual windows, over before the pull at 110 s
    assert len(pulled) == 1 and all(ms <= 65_000 for ms in short), (pulled, short)
    radio = sum(pulled) - 1000 * len(pulled)
    assert r.m.cell.used - used >= radio * RADIO_MA, (r.m.cell.used - used, radio * RADIO_MA)


def test_attack_a_link_that_cannot_be_built_on_the_old_image_is_no_reset_loop():
    # The customer pulls the cell in a trial's window (the record says
    # trial, the bootloader then boots the old image) and, while it is out,
    # spoils what the link is built from (secrets.json: main.make_link
    # raises on either image). The wake without a link failed the "trial"
    # on the old image without resuming it first: a reset, the same record
    # at the next boot, a reset again: a CPU that never sleeps, the cell
    # empty in days
    import main
    r = Rig()
    _credit(r.m)
    _switched(r, otakit.image(20_000))
    r.he.up = False
    pulled, _ = _wake_pulled_at(r, 100_000)
    assert pulled and r.state() == up.TRIAL and r.plant.flash.running == "ota_0"
    with open(r.d + "/secrets.json", "w") as f:
        f.write('{"mk": "not hex"}')          # the link's key: main.make_link raises
    resets = 0
    while True:
        try:
            ms = wake.work(r.m, r.hw, main.make_link, None, "unix")
            break
        except Reset:
            resets += 1
            assert resets < 5, ("a reset loop", r.ota_events())
            r.boot()
    r.plant.deepsleep(ms)
    r.boot()
    # the link back (the rig's): the update goes on and confirms
    r.he.up = True
    r.until(r.plant.clock.time() + 2 * DAY)
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()


def test_a_new_image_that_cannot_make_its_link_fails_its_trial_in_its_first_wake():
    # as U22 on a mains meter: the switched image's first wake has no link
    # (main.make_link raises in it): its trial fails the link check there
    # and the old image, whose link works, rechecks it; before, the image
    # slept unconfirmed and its rollback counted as a crash
    r = Rig()
    _credit(r.m)
    _switched(r, otakit.image(20_000))

    def make_link(m, hw):
        if r.plant.flash.running == "ota_1":
            raise ValueError("this image's link")
        return r._link(m, hw)

    try:
        wake.work(r.m, r.hw, make_link, None, "unix")
        raise AssertionError("no reset")
    except Reset:
        pass
    assert r.ota_events()[-1] & 0xFFFF == 5 << 8 | codes.OTA_SELFTEST_FAILED   # check 5, the link, r.ota_events()
    r.boot()
    assert r.plant.flash.running == "ota_0"
    r.wake()                                       # the old image's recheck: its link is up
    assert r.state() == up.VERIFY and r.m.fw_floor == 0, r.ota_events()


def test_a_new_cell_fitted_in_a_window_the_update_keeps_open_restores_with_its_count():
    # the office's `cell` op (docs/BATTERY.md §8) applied 30 s into a window
    # whose update radio was counted ahead (B18), the window then over
    # early: the count restarts under the prepaid part, and giving that
    # back must not leave a count below 0, which the state's restore refuses
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 300
    r.he.retained = signed(manifest_doc(img))
    c = r.plant.clock
    at = c.now_ms() + 30_000
    own = type(c).delay_us
    m = r.m
    done = []

    def delay_us(us):
        own(c, us)
        if not done and c.now_ms() >= at:
            done.append(m.cell.used)
            m.cell.fitted(c.time())
            m.save()
            r.he.rate = None               # and the head-end stops serving: the window ends early

    c.delay_us = delay_us
    r.wake()
    assert done and r.state() == up.DOWNLOAD
    # the wake's state restores (before: refused as corrupt, an older copy
    # restored), and its count holds the window's radio on the new cell
    assert not [e for e in r.m.log.recent(20) if e[2] == codes.EV_STATE_CORRUPT], r.m.log.recent(20)
    assert 0 < r.m.cell.used < 10_000_000 and r.m.cell.level_pct() >= 99, r.m.cell.used


def test_attack_a_slot_spoilt_between_two_windows_does_not_refuse_the_release():
    # Between two wakes the customer writes over a block of the slot the
    # download has already written (the flash chip is theirs; encrypted,
    # it decrypts to garbage all the same). Every chunk matched its digest
    # as it was received, so the slot's hash back from flash fails: that
    # was image-bad with the version refused for good, the meter kept on
    # the old image while it reports and takes top-ups as usual (a mains
    # meter the same, its flash written while it is off)
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 1000                      # 200 s of image: the first window ends inside the download
    r.he.retained = signed(manifest_doc(img, cs=16384))
    r.wake()
    p = up.Updater(r.m, r.hw.partitions, "unix", r.d).p
    assert r.state() == up.DOWNLOAD and p["o"] >= 16384, p
    with open(r.d + "/flash/ota_1.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 16)
    r.until(r.plant.clock.time() + 5 * DAY)
    # found in the slot's read-back, reported as the chunk it is in, fetched
    # again: the release confirms
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()
    steps = [e & 0xFF for e in r.ota_events()]
    assert 2 << 16 | 0 << 8 | codes.OTA_CHUNK_BAD in r.ota_events(), r.ota_events()
    assert codes.OTA_IMAGE_BAD not in steps, r.ota_events()


def test_attack_a_window_that_straddles_midnight_is_counted_and_books_the_new_day():
    # The day's allowance partly used (the head-end stopped serving early),
    # the customer presses the button just before local midnight: the
    # window is counted ahead for what the old day had left, then at
    # midnight the new day's allowance keeps it open for the full 120 s,
    # and the cell pulled at 00:01:30 took the rest of it out of the count
    # (and left the new day's allowance whole on file)
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 1000
    r.he.retained = signed(manifest_doc(img, cs=16384))
    c = r.plant.clock
    own = type(c).delay_us
    stop_at = c.now_ms() + 60_000

    def stop(us):
        own(c, us)
        if c.now_ms() >= stop_at:
            r.he.rate = None

    c.delay_us = stop
    day = (c.time() // DAY)
    while True:
        # the day's wakes (its scheduled window without pieces too), up to
        # the sleep that would reach midnight
        ms = wake.work(r.m, r.hw, r._link, None, "unix")
        if c.time() + ms // 1000 >= (day + 1) * DAY - 60:
            break
        r.plant.deepsleep(ms)
        r.boot()
    c.delay_us = lambda us: own(c, us)
    bd = up.Updater(r.m, r.hw.partitions, "unix", r.d).p["bd"]
    assert bd[0] == day and 60_000 < bd[1] < 110_000, bd
    r.he.rate = 1000
    # pressed so that the day's allowance still has 10 s left at midnight
    # (the button's card window, 8 s, comes first)
    left = (ob.RADIO_DAY_MS - bd[1]) // 1000
    r.plant.press_button(((day + 1) * DAY - left + 2 - c.time()) * 1000)
    r.plant.deepsleep(ms)
    r.boot()
    assert r.hw.wake_reason == "button"
    used = r.m.cell.used
    cut, ran = _wake_pulled_at(r, 120_000)
    assert cut and c.time() > (day + 1) * DAY + 60, (cut, ran, r.ota_events())
    radio = ran - 10_000                  # the button's card window first, then the radio
    assert r.m.cell.used - used >= radio * RADIO_MA, (r.m.cell.used - used, radio * RADIO_MA)
    bd = up.Updater(r.m, r.hw.partitions, "unix", r.d).p["bd"]
    assert bd == [day + 1, ob.RADIO_DAY_MS], bd


def _edit(r, **fields):
    """The customer rewrites the progress record on the flash (CRC only)."""
    u = up.Updater(r.m, r.hw.partitions, "unix", r.d)
    u.p.update(fields)
    u._save()


def test_attack_an_edited_allowance_or_hold_in_the_record_is_bounded():
    # bd: the day's radio used, written negative: the window stayed open for
    # the update as long as pieces came (hours, trickled), beyond what is
    # counted ahead (B18); hu: a hold written years ahead was restored as a
    # day at every window, for ever (a silent halt of the update)
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 500                       # slow: the download outlasts any allowance
    r.he.retained = signed(manifest_doc(img, cs=16384))
    r.wake()
    assert r.state() == up.DOWNLOAD
    day = r.plant.clock.time() // DAY
    _edit(r, bd=[day, -1_000_000_000])
    r.plant.brown_out()
    r.boot()                              # a power-on: a window at once
    n = len(r.radio)
    r.wake()
    assert r.radio[n][1] <= ob.RADIO_DAY_MS + 65_000, r.radio[n:]
    # a hold years ahead: the update goes on a day later all the same
    _edit(r, hu=r.plant.clock.time() + 3650 * DAY)
    r.plant.brown_out()
    r.boot()
    r.he.rate = 20_000
    r.until(r.plant.clock.time() + 3 * DAY)
    assert r.m.fw_floor == 2, r.ota_events()



def test_attack_an_edited_power_cut_count_does_not_let_a_relay_repeat_the_switch():
    # pc counts trials cut by a power-on: past MAX_TRIALS they wait a day.
    # Written below 0 (the record is CRC only), a relay cutting the power in
    # each trial's window had the meter switch again at every power-on:
    # three otadata writes a cycle (set_boot, the bootloader's NEW to
    # PENDING_VERIFY, its ABORTED), the otadata sectors worn out in weeks at
    # a cycle a minute (likewise rs, the resumes that hold a download, U25)
    r = Rig()
    _credit(r.m)
    _switched(r, otakit.image(20_000))
    _edit(r, pc=-1000, rs=-1000)
    r.he.up = False                       # the trial waits for the link: the relay cuts it
    for _ in range(8):
        cut, _ran = _wake_pulled_at(r, 20_000)
        assert cut
    switches = [e & 0xFF for e in r.ota_events()].count(codes.OTA_SWITCHED)
    assert switches <= up.MAX_TRIALS + 1, r.ota_events()
    assert up.Updater(r.m, r.hw.partitions, "unix", r.d).p["pc"] > up.MAX_TRIALS


def test_attack_a_progress_record_that_cannot_be_written_does_not_fail_every_wake():
    # The customer plants directories where the progress record's new copies
    # go (or fills the file system): every save of the record raises. It
    # raised out of the window's link steps, so every wake with a window
    # failed (wake.cycle: event 34 arg 2; here wake.work raised): nothing
    # saved, the window's schedule not advanced, a window again at every
    # wake 10 min later, the cell's count and the ULP's mark never saved
    import os
    r = Rig()
    _credit(r.m)
    img = otakit.image(200_000)
    r.he.image = img
    r.he.rate = 1000
    r.he.retained = signed(manifest_doc(img, cs=16384))
    r.wake()
    assert r.state() == up.DOWNLOAD
    for n in ("ota.0.new", "ota.1.new"):
        os.mkdir(r.d + "/" + n)
    t0 = r.plant.clock.time()
    n = len(r.radio)
    r.plant.flow.set_rate_lph(20)
    r.until(t0 + 2 * DAY)
    r.plant.flow.set_rate_lph(0)
    r.wake()
    failed = [e for e in r.m.log.recent(64) if e[2] == codes.EV_INTERNAL]
    assert not failed, failed
    assert len(r.radio) - n <= 8, r.radio[n:]          # the windows of two days, not one every 10 min
    assert abs(r.m.volume.ml() - r.plant.flow.delivered_ml()) <= 1000

