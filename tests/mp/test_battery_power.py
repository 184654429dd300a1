# The battery's charge count (firmware/power.py) and its uplink record.
import boards
import main
import wake
import power
from comms import codec
from comms.outbox import Outbox
from meter import WHY_NONE
from simkit import make_cfg
from mptest import fresh_dir, raises
from ulpkit import binary
from boards.unix_battery import Plant


def _boot(plant, d):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    return main.assemble(hw, make_cfg(friendly_hours=[0, 0], friendly_days=[])), hw


def test_charge_counts_sleep_and_wakes_and_survives_every_boot():
    plant, d = Plant(), fresh_dir("pc")
    m, hw = _boot(plant, d)
    m.balance, m.want_open, m.why_closed = 100_000, True, WHY_NONE
    m.save()
    for _ in range(10):                       # ten daily wakes, each a fresh boot
        m, hw = _boot(plant, d)
        plant.deepsleep(wake.work(m, hw))
    m, hw = _boot(plant, d)
    c = m.cell
    days = (c.last - c.since) // 86400
    assert days == 9                          # counted from the first wake
    # the sleep between wakes plus the wakes, from the model's figures
    slept = c.last - c.since
    want = slept * power.SLEEP_UA_X10 // 10 + 10 * power.WAKE_UAS
    assert want <= c.used <= want + 2 * power.VALVE_UAS
    assert c.level_pct() == 99


def test_days_left_follows_the_mean_rate():
    c = power.CellEstimate()
    c.wake(1_000_000)
    t = 1_000_000
    for _ in range(365):
        t += 86400
        c.wake(t)
    per_day = c.used * 86400 // (t - c.since)
    assert c.days_left(t) == (power.USABLE_UAS - c.used) // per_day
    assert 60 * 365 < c.days_left(t) < 80 * 365     # no reports counted: ~22 uA
    c.used = power.USABLE_UAS + 1
    assert c.level_pct() == 0 and c.days_left(t) == 0


def test_a_damaged_cell_state_is_refused():
    c = power.CellEstimate()
    raises(ValueError, c.load, [-1, 0, 0])
    raises(ValueError, c.load, [1, 2])


def test_battery_record_round_trips_and_clamps():
    r = codec.batt(1_767_225_600, 3_612, 87, 4_100)
    d, n = codec.decode_record(codec.batch([r]), 1)
    assert n == 14
    assert (d["kind"], d["t"], d["mv"], d["pct"], d["days"]) == (codec.BATT, 1_767_225_600, 3_612, 87, 4_100)
    d = codec.decode_record(codec.batt(5, None, 130, 10 ** 6))[0]
    assert (d["mv"], d["pct"], d["days"]) == (0, 100, 65535)


def test_outbox_overflow_folds_battery_records_away():
    ob = Outbox(fresh_dir("pb"), seg_recs=4, max_segs=3)
    for t in range(1, 30):
        ob.append(codec.tele(t, t * 1000, 0, 0, 0, 1, 0, None))
        ob.append(codec.batt(t, 3600, 99, 5000))
    kinds = []
    while True:
        recs = ob.peek(16)
        if not recs:
            break
        kinds.extend(codec.decode_record(r)[0]["kind"] for r in recs)
        ob.ack(recs)
    assert codec.SUMMARY in kinds and codec.BATT in kinds
