# Building blocks for firmware tests: a simulated meter on the unix board,
# driven on the virtual clock.
import asyncio

import boards
import config
import main
from mptest import fresh_dir


def make_cfg(**over):
    cfg = {}
    for k, v in config.DEFAULTS.items():
        cfg[k] = v
    cfg.update(over)
    return cfg


def make_meter(state_dir=None, board_opts=None, **cfg_over):
    """A meter on a fresh simulated board. Returns (meter, hw)."""
    state_dir = state_dir or fresh_dir("m")
    hw = boards.load("unix").build(state_dir=state_dir, **(board_opts or {}))
    meter = main.assemble(hw, make_cfg(**cfg_over))
    return meter, hw


def reboot(meter, hw, **board_opts):
    """The meter's board built again on its state directory (board_opts:
    the new board's, e.g. start, valve_open), the meter assembled on it with
    the same config: the next boot. Returns (meter, hw)."""
    hw2 = boards.load("unix").build(state_dir=hw.state_dir, **board_opts)
    return main.assemble(hw2, dict(meter.cfg)), hw2


def run(meter, hw, seconds, step_ms=1000):
    """Advance virtual time, polling the meter as its loop would."""
    for _ in range(seconds * 1000 // step_ms):
        hw.clock.advance(step_ms)
        meter.poll()


def tap_in_task(m, hw, s, d, card):
    """Run the card task until the tap's result is drawn; returns (code,
    microseconds from the end of the tap to the last nibble latched)."""
    ends = []
    poll = s.poll

    def timed():
        r = poll()
        if r is not None:
            ends.append((r, hw.clock.now_us()))
        return r
    s.poll = timed
    hw.world.reader.place(card)

    async def go():
        t = asyncio.create_task(main.card_task(s, m, hw, display=d))
        while not ends:
            await hw.clock.sleep_ms(10)
        await hw.clock.sleep_ms(0)
        t.cancel()
    asyncio.run(go())
    hw.world.reader.remove(card)
    s.poll = poll
    code, end_us = ends[0]
    return code, hw.world.lcd.last_write_us - end_us
