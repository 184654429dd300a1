# Firmware updates on a battery meter (firmware/ota/battery.py, docs/OTA.md
# §9): the update rides the reporting windows. The rig: tests/mp/batotakit.py.
import codes
import wake
import window
from boards.unix_battery import Reset
from ota import battery as ob
from ota import updater as up
from meter import WHY_NONE
import otakit
from otakit import manifest_doc, signed
from batotakit import DAY, Rig

TIMEOUT = 240           # a test plays days of wakes (16 s alone on an idle host)


def _credit(m, litres=10_000):
    m.balance = litres * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()


def _image(n=200_000, fault=0):
    return otakit.image(n, fault)


def _offered(n=200_000, fault=0, rate=20_000, cs=otakit.CS, **rig):
    """A battery meter with credit, and a head-end that offers a signed
    image of n bytes (retained manifest) and serves it at rate bytes/s
    (None: not at all). Returns (rig, image)."""
    r = Rig(**rig)
    _credit(r.m)
    img = _image(n, fault)
    r.he.image = img
    r.he.rate = rate
    r.he.retained = signed(manifest_doc(img, cs=cs))
    return r, img


def test_an_update_rides_the_windows_within_a_days_radio_and_confirms_in_the_wake_of_its_switch():
    r, img = _offered(rate=1000, cs=16384)   # 1 kB/s: 200 s of image, more than one day's allowance
    r.plant.flow.set_rate_lph(30)         # water all along, through every wake and window
    t0 = r.plant.clock.time()
    r.wake()                              # the power-on window: the manifest, the first chunks
    first = r.radio[-1][1]
    assert ob.RADIO_DAY_MS <= first <= ob.RADIO_DAY_MS + window.IDLE_MS + 1000, first   # the allowance, then the usual settle
    assert r.state() == up.DOWNLOAD
    p = up.Updater(r.m, r.hw.partitions, "unix", r.d).p
    assert 0 < p["o"] < len(img) and p["bd"][1] >= ob.RADIO_DAY_MS - 1000
    r.until(t0 + 3 * DAY)
    assert r.state() == up.IDLE and r.m.fw_floor == 2, r.ota_events()
    assert r.plant.flash.running == "ota_1"
    steps = [e & 0xFF for e in r.ota_events()]
    assert codes.OTA_VALID in steps and codes.OTA_SELFTEST_FAILED not in steps and codes.OTA_CHUNK_BAD not in steps
    # no window had the radio on longer than the allowance; the days' sum stays in it
    assert all(ms <= ob.RADIO_DAY_MS + ob.TRIAL_MAX_MS for _, ms in r.radio), r.radio
    by_day = {}
    for t, ms in r.radio:
        by_day[(t - t0) // DAY] = by_day.get((t - t0) // DAY, 0) + ms
    # each day: the allowance, and a few normal windows (the switch's trial, day 2)
    assert all(v <= ob.RADIO_DAY_MS + ob.TRIAL_MAX_MS + 3 * window.MAX_S * 1000 for v in by_day.values())
    # a deep-sleep wake is no power cycle: the resumes were not counted, nothing
    # was held or refused (but the retained manifest, now old, once)
    assert [(e >> 8) & 0xFF for e in r.ota_events(codes.OTA_REFUSED)] == [codes.OLD]
    assert steps.index(codes.OTA_REFUSED) > steps.index(codes.OTA_VALID)
    # the water of the whole update was metered and charged
    r.plant.flow.set_rate_lph(0)
    r.wake()
    assert abs(r.m.volume.ml() - r.plant.flow.delivered_ml()) <= 1000


def test_a_low_cell_pauses_the_update_and_a_new_cell_lets_it_go_on():
    r, img = _offered(n=60_000, rate=200)   # slow: the first window ends mid-download
    r.wake()
    assert r.state() == up.DOWNLOAD
    o1 = up.Updater(r.m, r.hw.partitions, "unix", r.d).p["o"]
    # the charge count falls under ota_min_pct (the valve's reserve is far below)
    from power import USABLE_UAS
    r.m.cell.used = USABLE_UAS * (100 - r.m.cfg["ota_min_pct"] + 1) // 100
    r.m.save()
    asked = r.he.requests
    r.until(r.plant.clock.time() + 2 * DAY)
    assert r.he.requests == asked                  # nothing asked for while the cell is low
    assert up.Updater(r.m, r.hw.partitions, "unix", r.d).p["o"] == o1
    low = [e for e in r.ota_events(codes.OTA_REFUSED) if (e >> 8) & 0xFF == codes.BATTERY_LOW]
    assert len(low) == 1                           # said once, not at every window
    assert all(ms <= window.MAX_S * 1000 for _, ms in r.radio[1:])   # only the usual windows
    r.m.cell.fitted(r.plant.clock.time())          # the office's `cell` op after a technician's visit
    r.m.save()
    r.he.rate = 20_000
    r.until(r.plant.clock.time() + 2 * DAY)
    assert r.m.fw_floor == 2 and r.state() == up.IDLE, r.ota_events()


def test_a_manifest_offered_to_a_low_cell_is_refused_with_battery_low():
    r, img = _offered(n=20_000, cell_mv=3400)   # the divider under ota_min_mv (3600)
    r.wake()
    assert r.state() == up.IDLE and r.he.requests == 0
    assert [(e >> 8) & 0xFF for e in r.ota_events(codes.OTA_REFUSED)] == [codes.BATTERY_LOW]
    r.plant.cell_mv = 3650
    r.until(r.plant.clock.time() + DAY + 3600)
    assert r.m.fw_floor == 2, r.ota_events()


def test_a_failed_trial_rolls_back_in_its_wake_and_hourly_windows_do_not_retry_before_a_day():
    # this image's card driver never reaches the reader
    r, img = _offered(n=30_000, fault=otakit.ota_model.FAULT_CARD, window_s=3600)
    t0 = r.plant.clock.time()
    r.wake()
    # switched, failed its card check, rolled back, the old image rechecked the reader
    assert r.plant.flash.running == "ota_0" and r.m.fw_floor == 0
    steps = [e & 0xFF for e in r.ota_events()]
    assert steps.count(codes.OTA_SWITCHED) == 1 and codes.OTA_SELFTEST_FAILED in steps
    assert r.state() == up.VERIFY                  # held for RETRY_MS, on file
    writes = r.plant.flash.entries()
    r.until(t0 + DAY - 3600)                       # 22 hourly windows, each a fresh boot
    assert r.plant.flash.entries() == writes       # no switch again before the day is out
    assert [e & 0xFF for e in r.ota_events()].count(codes.OTA_SWITCHED) == 1
    r.until(t0 + DAY + 2 * 3600)
    assert [e & 0xFF for e in r.ota_events()].count(codes.OTA_SWITCHED) == 2
    assert r.plant.flash.running == "ota_0"        # the faulty image never stays
    r.plant.flow.set_rate_lph(60)
    r.until(r.plant.clock.time() + 600)
    r.plant.flow.set_rate_lph(0)
    r.wake()
    assert abs(r.m.volume.ml() - r.plant.flow.delivered_ml()) <= 1000


def test_a_halted_rollout_is_given_up_after_three_windows_without_a_piece():
    r, img = _offered(n=60_000, rate=200)
    r.wake()
    assert r.state() == up.DOWNLOAD
    r.he.rate = None                               # the head-end stopped serving (halted)
    r.he.retained = None
    n = len(r.radio)
    r.until(r.plant.clock.time() + 4 * DAY)
    assert r.state() == up.IDLE
    gave_up = [e for e in r.ota_events(codes.OTA_REFUSED) if (e >> 8) & 0xFF == codes.TIMEOUT]
    assert len(gave_up) == 1
    # a window waiting for pieces waits PIECE_WAIT_MS, not the day's allowance
    assert all(ms <= ob.PIECE_WAIT_MS + window.MAX_S * 1000 for _, ms in r.radio[n:]), r.radio[n:]


def test_an_erased_otadata_is_found_at_a_wake_without_a_window():
    r, img = _offered(n=20_000)
    r.wake()
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1"
    r.he.retained = None
    r.wake()                                       # the night's window
    # the customer erases otadata while the meter sleeps: the bootloader
    # then starts the old image in ota_0
    with open(r.d + "/flash/otadata.bin", "wb") as f:
        f.write(b"\xff" * 64)
    r.boot()
    assert r.plant.flash.running == "ota_0" and r.hw.wake_reason == "timer"
    assert not r.m.window.due(r.hw.wake_reason, r.plant.clock.time(), 0)   # no window at this wake
    n = len(r.radio)
    r.wake()                                       # a timer wake, no window: found, set back, reset
    assert r.plant.flash.running == "ota_1"
    assert any(e & 0xFF == codes.OTA_WRONG_SLOT for e in r.ota_events())
    assert len(r.radio) == n + 1 and r.radio[-1][1] < 1000   # the reset came at once, no window first


def test_a_power_cut_in_the_trial_of_a_battery_meter_rolls_back_and_confirms_later():
    r, img = _offered(n=20_000)
    m, hw = r.m, r.hw
    # the first window ends in the switch: the reset boots the new image
    try:
        wake.work(m, hw, r._link, None, "unix")
        raise AssertionError("no switch")
    except Reset:
        pass
    r.boot()
    assert r.plant.flash.running == "ota_1" and r.state() == up.SWITCHED
    # the cell is pulled in the trial's window, before the self-test confirms
    r.plant.brown_out()
    r.plant.clock.advance(60_000)
    r.boot()                                       # the bootloader: the pending image is aborted
    assert r.plant.flash.running == "ota_0" and r.hw.wake_reason == "power"
    r.until(r.plant.clock.time() + DAY + 3600)
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()
    rb = [e for e in r.ota_events(codes.OTA_ROLLED_BACK)]
    assert rb and (rb[0] >> 8) & 0xFF == 0         # a power cut: not the image's fault


def test_a_switch_in_a_customer_poll_gets_its_trial_in_the_same_wake():
    r, img = _offered(n=20_000, rate=None)   # the power-on window: the manifest, no pieces yet
    r.wake()
    assert r.state() == up.DOWNLOAD
    r.he.rate = 20_000
    r.m.window.next = r.plant.clock.time() + 12 * 3600   # the next scheduled window: far off
    r.m.window.last -= 3600                        # the last one ended over 30 min ago
    r.m.save()
    r.plant.press_button(60_000)                   # the customer presses the button
    r.plant.deepsleep(DAY * 1000)
    r.boot()
    assert r.hw.wake_reason == "button"
    r.wake()                                       # the poll's window downloads, switches, resets ...
    # ... and the wake after the reset (not scheduled for a window) runs the trial
    assert r.m.fw_floor == 2 and r.plant.flash.running == "ota_1", r.ota_events()
    assert r.plant.clock.time() < r.m.window.next  # before the night's window


def test_requests_keep_to_the_headends_block_gap_so_none_is_dropped():
    # the reference head-end serves a meter one block per block_gap_s (0.25 s)
    # and drops a request that comes sooner; the battery window's 50 ms
    # steps would ask sooner, and each dropped request costs REQUEST_MS
    r, img = _offered(n=60_000, rate=5_000_000)   # 15 blocks
    r.wake()
    assert r.m.fw_floor == 2, r.ota_events()
    assert r.he.requests == 15                     # one request a block, none dropped
    assert sum(ms for _, ms in r.radio) < 20_000, r.radio
