# Starting the ULP pulse counter (firmware/ulp/counter.S) on a battery board.
# Shared by the ESP32 battery board (esp32.ULP) and the unix board (the
# emulator in boards/unix/ulp_emu.py has the same three methods).
from metering.ulpcount import W_MAGIC, W_SAMPLES, MAGIC, ENTRY

PERIOD_US = const(10_000)   # one sample every 10 ms (docs/BATTERY.md §2)
SAMPLES = const(3)          # 3 equal samples (30 ms) accept a new level


def start(ulp, ram, binary, power_lost, period_us=PERIOD_US, samples=SAMPLES):
    """Load and start the counter unless RTC memory holds a running one.
    Returns True when the count starts again from zero (fresh)."""
    if not power_lost and ram.word(W_MAGIC) & 0xFFFF == MAGIC:
        return False          # deep-sleep wake or CPU reset: it kept counting
    ulp.set_wakeup_period(0, period_us)
    ulp.load_binary(0, binary)
    ram.set_word(W_SAMPLES, samples)
    ulp.run(ENTRY)
    return True
