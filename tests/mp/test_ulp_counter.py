# The ULP pulse counter: the assembled program of the battery board, run on
# the emulator, on pulses from the flow model through a reed contact model.
from ulpkit import Rig, binary
from metering.ulpcount import W_COUNT, W_MAGIC, MAGIC
from boards.unix.ulp_emu import UlpEmu, UlpFault
from boards.unix.clock import SimClock
from mptest import raises


def test_binary_is_the_assembled_program():
    b = binary()
    assert b[:4] == b"ulp\x00"
    rig = Rig()
    assert rig.ulp.word(W_MAGIC) & 0xFFFF == MAGIC
    assert rig.ulp.runs == 1     # started at once, then every 10 ms


def test_counts_every_closing_at_normal_flow():
    rig = Rig(k=(1, 1))
    rig.pour(100, 1500)
    assert rig.reed.closings == 100
    assert rig.ulp.word(W_COUNT) & 0xFFFF == 100
    assert rig.src.take() == 100
    assert rig.src.take() == 0


def test_bounce_is_filtered_by_three_samples():
    # 35 ms of chatter in 7 ms slots after every change, sampled every 10 ms
    rig = Rig(k=(1, 1), bounce_us=35_000, chatter_us=7_000)
    rig.pour(60, 600)
    assert rig.reed.closings == 60
    assert rig.src.take() == 60


def test_one_sample_debounce_would_count_the_bounce():
    # the same chatter with N = 1: the program's debounce is what filters it
    rig = Rig(k=(1, 1), bounce_us=35_000, chatter_us=7_000, samples=1)
    rig.pour(60, 600)
    assert rig.reed.closings == 60
    assert rig.src.take() > 60


def test_fast_flow_at_the_documented_limit():
    # 10 pulses/L at Q4 = 3125 L/h: 8.7 Hz, half a pulse is 57.6 ms, more
    # than the (3 + 1) samples of 10 ms the debounce needs (docs/BATTERY.md)
    rig = Rig(k=(10, 1))
    rig.pour(50, 3125)
    assert rig.reed.closings == 500
    assert rig.src.take() == 500


def test_threshold_wakes_a_sleeping_cpu_once_reached():
    rig = Rig()
    woke = []
    rig.ulp.on_wake = lambda: woke.append(rig.ulp.word(W_COUNT) & 0xFFFF)
    rig.src.wake_after(5)
    rig.ulp.cpu_asleep = True
    rig.pour(4, 1000)
    assert woke == []                  # 4 of 5: still asleep
    rig.pour(3, 1000)
    assert woke == [5]                 # woken in the run that counted the 5th
    assert rig.src.take() == 7


def test_no_wake_while_the_cpu_is_awake():
    rig = Rig()
    rig.src.wake_after(2)
    rig.pour(5, 1000)
    assert rig.ulp.wakes == 0


def test_exactly_once_across_a_reset_before_the_save():
    rig = Rig()
    rig.pour(10, 1000)
    assert rig.src.take() == 10
    saved = rig.src.mark()             # the state holds volume 10 with this mark
    rig.pour(7, 1000)
    assert rig.src.take() == 7         # folded in RAM, then the CPU resets
    rig.pour(3, 1000)                  # before its save: the ULP counts on
    assert rig.boot() is False         # RTC memory kept: the program runs on
    rig.src.resume(saved)
    assert rig.src.take() == 10        # the 7 again (never saved) and the 3
    assert rig.src.take() == 0


def test_count_wraps_at_16_bits_without_loss():
    rig = Rig()
    rig.ulp.set_word(W_COUNT, 0xFFFD)  # long service: the count is about to wrap
    rig.boot()
    rig.src.resume(0xFFFD)
    rig.pour(6, 1000)
    assert rig.ulp.word(W_COUNT) & 0xFFFF == 3
    assert rig.src.take() == 6


def test_brown_out_restarts_the_count_and_never_double_counts():
    rig = Rig()
    rig.pour(20, 1000)
    saved = rig.src.mark()
    assert rig.src.take() == 20
    saved = rig.src.mark()
    rig.ulp.power_loss()               # the cell sagged: RTC memory is gone
    rig.pour(4, 1000)                  # no ULP, no count (nothing can count this)
    assert rig.boot(power_lost=True) is True
    rig.src.resume(saved)              # a mark of the old count: not applied
    rig.pour(5, 1000)
    assert rig.src.take() == 5


def test_emulator_refuses_what_it_does_not_model():
    clock = SimClock()
    emu = UlpEmu(clock)
    emu.set_word(0, 0x30000000)        # I2C_RD
    emu.set_wakeup_period(0, 10_000)
    raises(UlpFault, emu.run, 0)
