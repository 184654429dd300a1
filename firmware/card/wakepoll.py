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


def polls(session, hw, window):
    """Look for a card once, then (window true) every POLL_MS until a card
    answered or WINDOW_MS passed. Leaves the reader in hard power-down.
    Returns the tap's result code, or None when no card answered. Never
    raises: the wake's metering comes first."""
    reader = session.reader
    nap = hw.lightsleep if hw.lightsleep is not None else hw.clock.delay_ms
    code = None
    try:
        code = session.poll()
        waited = 0
        while window and code is None and waited < WINDOW_MS:
            reader.power_down()
            nap(POLL_MS)
            waited += POLL_MS
            reader.wake()
            code = session.poll()
    except Exception as e:  # noqa: BLE001 - a reader fault must not stop the wake
        print("card poll:", repr(e))
    try:
        reader.hard_power_down()
    except Exception:  # noqa: BLE001 - the board's pull-down holds NRSTPD low anyway
        pass
    return code
