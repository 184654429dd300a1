# An outside review's attacks on a battery meter's count (docs/SECURITY.md,
# "Battery meter", B9-): the customer holds the cell and the chip's resets.
# Every boot is the firmware's own wake (wake.work) on the unix battery
# plant, the ULP program on its emulator, on virtual time.
import wake
from batterykit import PRICE_L, build, open_with
from mptest import fresh_dir
from boards.unix_battery import Plant
from boards.unix.clock import EPOCH_2026
from meter import WHY_BATTERY, WHY_SENSOR
import power

NO_FRIENDLY = {"friendly_hours": [0, 0], "friendly_days": [], "friendly_dates": []}


def _boot(plant, d, ulp_binary=None, cfg=NO_FRIENDLY):
    return build(plant, d, ulp_binary, **cfg)


def _meter(d, litres_of_credit, **plant):
    plant = Plant(**plant)
    m, hw = _boot(plant, d)
    open_with(m, litres_of_credit)
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    return plant


def test_attack_pulling_the_cell_before_midnight_loses_at_most_save_l_litres():
    # a day's water drawn, then the cell pulled a minute before the
    # midnight wake would have saved it: RTC memory (the ULP's count) is
    # lost, so whatever was not saved goes unbilled; done every evening,
    # that would be all the water, for one power-up event a day
    d = fresh_dir("abr0")
    plant = _meter(d, 1000)
    m, hw = _boot(plant, d)
    plant.flow.pour(40_000, 600)                 # 40 L in 4 min, in the morning
    ms = wake.work(m, hw)
    pull = m.history.day_end - 60                # 23:59, local
    while True:
        left = (pull - m.clock.time()) * 1000
        plant.deepsleep(ms if ms < left else left)
        if m.clock.time() >= pull:
            break                                # asleep at 23:59 ...
        m, hw = _boot(plant, d)                  # (woken before: by the ULP)
        ms = wake.work(m, hw)
    plant.brown_out()                            # ... the cell pulled and put back
    m, hw = _boot(plant, d)
    assert hw.ulp_fresh
    wake.work(m, hw)
    assert plant.flow.delivered_ml() == 40_000
    assert m.volume.ml() >= 40_000 - m.cfg["save_l"] * 1000, m.volume.ml()
    assert m.balance <= (1000 - 40 + m.cfg["save_l"]) * PRICE_L


def test_attack_a_reset_that_stops_the_ulp_is_found_and_it_counts_again():
    # a system reset (the RTC watchdog's, or a brown-out the chip's
    # detector turns into an RTC reset) clears the ULP's timer enable but
    # not RTC slow memory: the magic word still says "running", so a CPU
    # that trusts it never starts the program again and the water runs
    # uncounted, the valve open past the credit, until the next power-on
    d = fresh_dir("abr1")
    plant = _meter(d, 30)
    plant.flow.pour(5000, 600)
    plant.clock.advance(60_000)
    plant.ulp.stop()                             # the RTC domain reset: no more runs ...
    plant.cpu_reset()                            # ... and the CPU boots on a reset cause
    m, hw = _boot(plant, d)
    assert not hw.ulp_fresh                      # the count in memory is still good
    plant.deepsleep(wake.work(m, hw))
    m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.volume.ml() == 5000                 # the 5 L poured before the stop
    plant.flow.set_rate_lph(600)                 # a tap left open: the credit's end wakes the CPU
    for _ in range(4):
        plant.deepsleep(wake.work(m, hw))
        m, hw = _boot(plant, d)
    wake.work(m, hw)
    assert m.volume.ml() == 30_000 and not m.want_open and plant.valve.state == 0


def test_attack_a_reset_between_the_ulp_load_and_its_start_is_no_running_count():
    # the power-on boot reloads the program; the CPU resets after the load
    # and before run() (the load itself wrote count 0 and, in the binary,
    # the magic word): the next boot, a reset, must not take that memory
    # for a running count (nothing would count, and the count 0 against
    # the saved mark would bill 2^16 - mark pulses)
    d = fresh_dir("abr2")
    plant = _meter(d, 1000)
    plant.flow.pour(40_000, 600)
    for _ in range(5):
        m, hw = _boot(plant, d)
        plant.deepsleep(wake.work(m, hw))
    assert m.volume.ml() == 40_000 and m.pulses.mark() == 40
    plant.brown_out()                            # the cell pulled and put back ...
    run = plant.ulp.run

    def cut(entry):
        raise OSError("the CPU resets")          # ... and a reset before the start
    plant.ulp.run = cut
    try:
        _boot(plant, d)
    except OSError:
        pass
    plant.ulp.run = run
    plant.cpu_reset()
    m, hw = _boot(plant, d)
    assert plant.ulp.entry is not None, "the ULP program is not running"
    plant.flow.pour(3000, 600)
    plant.clock.advance(60_000)
    wake.work(m, hw)
    assert m.volume.ml() == 43_000, m.volume.ml()


def test_attack_a_nearly_empty_cell_put_in_closes_the_valve_while_it_still_can():
    # the customer swaps the cell for a nearly empty one of the same type:
    # a power-on cannot tell (and never restarts the count, B8), so the
    # count believes the old cell's charge and the new one dies first,
    # its latching valve left open for good
    d = fresh_dir("abr3")
    plant = _meter(d, 1000, cell_mv=3640)
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    assert m.want_open and m.cell.level() == 0
    plant.brown_out()                            # the cell out ...
    plant.cell_mv = 0                            # ... a broken divider reads 0: not a cell
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    assert m.want_open and m.cell.level() == 0
    plant.brown_out()
    plant.cell_mv = 3150                         # a nearly empty cell: off its plateau
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    assert m.cell.level() == power.LEVEL_RESERVE
    assert not m.want_open and m.why_closed == WHY_BATTERY and plant.valve.state == 0
    assert m.cell.level_pct() <= power.RESERVE_UAS * 100 // power.USABLE_UAS + 1   # what the uplink says
    m, hw = _boot(plant, d)                      # and it stays closed at the next wake
    wake.work(m, hw)
    assert not m.want_open and plant.valve.state == 0


def test_attack_a_damaged_ulp_binary_closes_the_valve_instead_of_a_dead_boot():
    # the customer corrupts the flash blocks of /ulp/counter.ulp (under
    # flash encryption they cannot write a chosen file, but they can spoil
    # one) and pulls the cell: the power-on cannot load the program, so
    # nothing would count; a boot that fails there keeps the CPU awake
    # (hold_closed) with the valve as it was: free water, then a dead cell
    d = fresh_dir("abr4")
    plant = _meter(d, 1000)
    plant.flow.pour(4000, 600)
    plant.clock.advance(60_000)
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    assert m.volume.ml() == 4000
    plant.brown_out()
    for _ in range(2):                           # every wake finds it damaged again
        m, hw = _boot(plant, d, ulp_binary=b"\xff" * 148)
        plant.flow.pour(3000, 600)
        plant.deepsleep(wake.work(m, hw))        # the wake ends in deep sleep, as every wake
        assert not m.want_open and m.why_closed == WHY_SENSOR and plant.valve.state == 0
        assert m.volume.ml() == 4000             # no stale count billed
    assert plant.flow.delivered_ml() < 4000 + 6000


def test_attack_credit_run_out_just_before_the_friendly_period_ends_flows_at_most_save_l_past_it():
    # friendly hours until 08:00; the credit runs out at 07:32 with a tap
    # open: the ULP was armed with the friendly debt allowance (5.00, 1428 L)
    # and the sleep lasts until midnight, so without another wake the valve
    # stays open all day on debt
    cfg = {"friendly_hours": [0, 8], "friendly_days": [], "friendly_dates": []}
    d = fresh_dir("abr5")
    plant = Plant(start=EPOCH_2026 + 7 * 3600 + 1800)        # 07:30 local
    m, hw = _boot(plant, d, cfg=cfg)
    open_with(m, 2)
    m, hw = _boot(plant, d, cfg=cfg)
    plant.flow.set_rate_lph(60)                              # 1 L a minute
    ms = wake.work(m, hw)
    nine = EPOCH_2026 + 9 * 3600
    while m.clock.time() < nine:
        plant.deepsleep(min(ms, (nine - m.clock.time()) * 1000))
        m, hw = _boot(plant, d, cfg=cfg)
        ms = wake.work(m, hw)
    assert not m.want_open and plant.valve.state == 0
    # 30 L to 08:00 (2 L paid, 28 L on the friendly allowance), then at
    # most save_l more before a wake closes the valve; all of it billed
    assert plant.flow.delivered_ml() <= 30_000 + m.cfg["save_l"] * 1000, plant.flow.delivered_ml()
    assert abs(m.volume.ml() - plant.flow.delivered_ml()) < 1000     # a pulse per litre
