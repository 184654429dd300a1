# The customer's button: short press confirms reopening, long press asks for
# emergency credit; bounce is ignored.
import codes
from button import Button, SHORT, LONG
from boards.unix.clock import SimClock
from boards.unix.pins import SimPin, IN, PULL_UP
from simkit import make_meter, run
import main
import asyncio


def _press(pin, clock, b, ms):
    """Hold for ms, then release; every report seen, in order."""
    pin.drive(0)
    got = []
    for _ in range(ms // 10):
        clock.advance(10)
        r = b.poll()
        if r:
            got.append((r, "held"))
    pin.drive(1)
    clock.advance(10)
    r = b.poll()
    if r:
        got.append((r, "released"))
    return got


def test_short_long_and_bounce():
    clock = SimClock()
    pin = SimPin("btn", IN, PULL_UP)
    b = Button(pin, clock)
    assert b.poll() is None
    assert _press(pin, clock, b, 200) == [(SHORT, "released")]
    # a long press is reported once, while still held (the meter can beep)
    assert _press(pin, clock, b, 6000) == [(LONG, "held")]
    assert _press(pin, clock, b, 20) == []          # contact bounce
    assert b.poll() is None


def test_button_task_confirms_and_grants_emergency():
    m, hw = make_meter(tariff={"v": 1, "b": [[0, 1_000_000]]}, emergency=5000,
                       friendly_hours=[0, 0], friendly_days=[])
    m.apply_credit("card", 1, 1, 2000)             # credit back, waiting for confirmation
    assert m.awaiting_confirm and not m.want_open

    async def scenario():
        t = asyncio.create_task(main.button_task(m, hw))
        hw.button.drive(0)
        for _ in range(10):
            await hw.clock.sleep_ms(50)             # 0.5 s: a short press
        hw.button.drive(1)
        await hw.clock.sleep_ms(100)
        assert m.want_open, "short press reopens"
        hw.button.drive(0)
        for _ in range(80):
            await hw.clock.sleep_ms(50)             # 4 s: a long press
        hw.button.drive(1)
        await hw.clock.sleep_ms(100)
        t.cancel()
    asyncio.run(scenario())
    assert m.emergency_owed == 5000
    assert [e for e in m.log.recent(20) if e[2] == codes.EV_EMERGENCY]
