# Building blocks for firmware tests: a simulated meter on the unix board,
# driven on the virtual clock.
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


def run(meter, hw, seconds, step_ms=1000):
    """Advance virtual time, polling the meter as its loop would."""
    for _ in range(seconds * 1000 // step_ms):
        hw.clock.advance(step_ms)
        meter.poll()
