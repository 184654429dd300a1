# Starting the ULP pulse counter (firmware/ulp/counter.S) on a battery board.
# Shared by the ESP32 battery board (esp32.ULP) and the unix board (the
# emulator in boards/unix/ulp_emu.py has the same three methods).
from metering.ulpcount import W_COUNT, W_MAGIC, W_SAMPLES, W_STABLE, MAGIC, ENTRY

PERIOD_US = const(10_000)   # one sample every 10 ms (docs/BATTERY.md §2)
SAMPLES = const(3)          # 3 equal samples (30 ms) accept a new level


def start(ulp, ram, binary, power_lost, level=1, running=True, period_us=PERIOD_US, samples=SAMPLES):
    """Load and start the counter unless RTC memory holds a running one.
    level: the contact's pad now (1 open, 0 closed). The count starts from
    the contact as it is: a meter that stopped with the contact closed is
    no pulse at power-on (the binary's `stable` says open). running: the
    ULP's timer is enabled (a system reset clears it, not slow memory: then
    the count there is good, and only the program is started again).
    Returns True when the count starts again from zero (fresh)."""
    if not power_lost and ram.word(W_MAGIC) & 0xFFFF == MAGIC:
        if not running:
            ulp.set_wakeup_period(0, period_us)
            ulp.run(ENTRY)
        return False          # deep-sleep wake or CPU reset: it kept counting
    ulp.set_wakeup_period(0, period_us)
    ulp.load_binary(0, binary)
    ram.set_word(W_MAGIC, 0)  # whatever the binary holds there
    ram.set_word(W_SAMPLES, samples)
    ram.set_word(W_STABLE, 1 if level else 0)
    ulp.run(ENTRY)
    # last: the magic means a program that runs, so a reset before this
    # line leaves memory that the next boot loads afresh
    ram.set_word(W_MAGIC, MAGIC)
    return True


class NotCounting:
    """Stands in the sensor loop's place (Hardware.sensor_pin) when the
    program could not be read or loaded (a damaged /ulp/counter.ulp): it
    reads 1, "loop open", so the Meter logs a sensor fault and closes the
    valve (why sensor), as for a cut cable, instead of a board that fails
    to boot and keeps the CPU awake with the valve as it was."""

    @staticmethod
    def value():
        return 1


def start_or_fault(ulp, ram, read_binary, power_lost, level=1, running=True):
    """start() with the binary from read_binary(). Returns (fresh, sensor):
    sensor is None, or a NotCounting when the program could not start."""
    try:
        return start(ulp, ram, read_binary(), power_lost, level, running), None
    except (OSError, ValueError) as e:
        print("ULP program not started: %r" % e)
        ram.set_word(W_MAGIC, 0)
        ram.set_word(W_COUNT, 0)   # nothing counts: no stale count to bill
        return True, NotCounting()
