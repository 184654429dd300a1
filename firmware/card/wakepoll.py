# Card polls on a battery meter's wake (docs/BATTERY.md §10).
#
# The MFRC522 draws 60 mA with its field on and 13.5 mA with its clock
# running (NXP MFRC522 datasheet rev. 3.9, Table 1, typical), so on a
# battery it is off except for a look now and then. Between wakes it sits
# in hard power-down (8.6.1, at most 5 uA): the board pulls NRSTPD low with
# a resistor, so a chip in deep sleep, whose pads float, or a crash leaves
# it off; each wake's driver start is the hard reset. Every wake looks once
# (a card lying on the reader is read at the next wake, whatever woke the
# CPU); a button wake opens a card window, a look every POLL_MS for
# WINDOW_MS with the reader in soft power-down (8.6.2, registers kept)
# between looks and the CPU in light sleep where the board has it. The
# first card that answers ends the window, whatever its result: a card
# left on the reader keeps nothing awake.
from micropython import const

WINDOW_MS = const(8000)      # "press the button, then hold your card to the reader"
POLL_MS = const(250)         # a tap takes 50-150 ms: a card is never missed
# The button must not be a way to empty the cell: a button wake costs a boot
# and a card window (about 33 mAs). At most BUTTON_WAKES_PER_DAY a local
# day; then the button wakes nothing until the day's end (the card still
# reads at the other wakes). A held button is a level that would end every
# sleep at once (EXT1 wakes on the level): while it is held the sleep does
# not arm it and lasts at most HELD_CHECK_S.
BUTTON_WAKES_PER_DAY = const(12)
HELD_CHECK_S = const(1800)
# charge, for the cell's count (power.py): a look (or a tap) is charged by
# its duration at the reader with its field on (73.5 mA: IDDD + IDDA +
# ITVDD, datasheet Table 1 typical) plus the CPU awake (40 mA): an upper
# bound, since the field is off while the CPU works between frames; a nap
# between looks is light sleep, 0.8 mA (ESP32 datasheet), or the CPU awake
# on a board without light sleep
LOOK_MA = const(114)
NAP_UA = const(800)
_AWAKE_UA = const(40_000)
# the count lives in RTC slow memory (survives deep sleep, not a power-on):
# word 500, inside the ULP's reserved 2040 bytes, above its program (148
# bytes), written by the CPU only: (local day & 0xFF) << 8 | wakes that day
W_BUTTON = const(500)


def polls(session, hw, window):
    """Look for a card once, then (window true) every POLL_MS until a card
    answered or WINDOW_MS passed. Leaves the reader in hard power-down.
    Returns (the tap's result code or None when no card answered, the
    charge of the looks and naps in uAs). Never raises: the wake's
    metering comes first."""
    reader = session.reader
    light = hw.lightsleep is not None
    nap = hw.lightsleep if light else hw.clock.delay_ms
    nap_uas = POLL_MS * (NAP_UA if light else _AWAKE_UA) // 1000
    clock = hw.clock
    code = None
    uas = 0
    t = clock.ticks_us()
    try:
        code = session.poll()
        waited = 0
        while window and code is None and waited < WINDOW_MS:
            reader.power_down()
            uas += clock.ticks_diff(clock.ticks_us(), t) * LOOK_MA // 1000 + nap_uas
            nap(POLL_MS)
            waited += POLL_MS
            t = clock.ticks_us()
            reader.wake()
            code = session.poll()
    except Exception as e:  # noqa: BLE001 - a reader fault must not stop the wake
        print("card poll:", repr(e))
    uas += clock.ticks_diff(clock.ticks_us(), t) * LOOK_MA // 1000
    try:
        reader.hard_power_down()
    except Exception:  # noqa: BLE001 - the board's pull-down holds NRSTPD low anyway
        pass
    return code, uas


def button_plan(hw, sleep_ms, day):
    """Count this wake if the button caused it, and say how the next deep
    sleep goes: (ms, whether the button may end it). day: the local day
    number."""
    ram = hw.ulp_ram
    w = 0 if hw.ulp_fresh else ram.word(W_BUTTON) & 0xFFFF   # fresh: RTC memory was noise
    n = w & 0xFF if w >> 8 == day & 0xFF else 0
    if hw.wake_reason == "button" and n < 0xFF:
        n += 1
    ram.set_word(W_BUTTON, (day & 0xFF) << 8 | n)
    if n >= BUTTON_WAKES_PER_DAY:
        return sleep_ms, False
    if not hw.button.value():
        held = HELD_CHECK_S * 1000
        return (sleep_ms if sleep_ms < held else held), False
    return sleep_ms, True

