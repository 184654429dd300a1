# Valve subsystem: drivers (latching, motorised), limit-switch feedback and
# the controller the meter drives (retries, backoff, tamper, exercise).
#
# Positions, and the arguments the subsystem puts in the event log. The
# board's valve_cfg overrides DEFAULTS key by key (see docs/VALVE.md); the
# drivers read every timing from the merged dict and hold none of their own.

POSITION_UNKNOWN = const(-1)
POSITION_CLOSED = const(0)
POSITION_OPEN = const(1)
POSITION_MOVING = const(2)

# arg of EV_VALVE_FAULT: fault + 256 * round (rounds 1, 2, 4, 8 ... are logged)
VF_CLEARED = const(0)      # the position is confirmed again
VF_NOT_OPEN = const(1)     # open not confirmed after 1 + retries actuations
VF_NOT_CLOSED = const(2)   # close not confirmed after 1 + retries actuations
VF_FEEDBACK = const(3)     # feedback lost while idle, or both switches active

# arg of EV_VALVE_EXERCISE
EX_START = const(0)
EX_DONE = const(1)         # cycle complete, both ends confirmed (or assumed)
EX_STUCK = const(2)        # the far end was not reached: the valve may be seizing
EX_REOPEN = const(3)       # the return to the intended position failed: alarm, retrying

DEFAULTS = {
    "type": "latching",    # "latching" (coil pulses) or "motor" (ball valve, drives to a limit)
    "pulse_ms": 50,        # latching: coil pulse width
    "settle_ms": 200,      # latching: pulse end -> feedback check
    "timeout_ms": 15_000,  # motor: give up driving toward a limit switch after this
    "run_ms": 10_000,      # motor: drive time toward an end that has no limit switch
    "coast_ms": 200,       # motor: pause with the bridge off before reversing
    "fb_active": 0,        # level of an active limit switch (0: switch to ground, pull-up)
    "retries": 2,          # extra actuations after a failed feedback check
    "backoff_s": 60,       # wait after a failed round, doubled each round ...
    "backoff_max_s": 3600,  # ... up to this
    "exercise_days": 30,   # exercise a valve that has not moved for this long (0: never)
    "exercise_hour": 3,    # local hour when an exercise may start
    "quiet_s": 900,        # ... and only after this long without a flow pulse
    "exercise_closed": False,  # also exercise a valve held closed (open/close cycle)
}


def config(board_cfg):
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = v
    if board_cfg:
        cfg.update(board_cfg)
    return cfg
