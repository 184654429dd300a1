# A simulated meter as a device: the unix board booted through main.boot(),
# exactly as an ESP32 boots (the meter runs behind the REPL), for an
# integrator's own broker and head-end (docs/INTEGRATION.md).
#
#   micropython boards/unix/device.py STATE_DIR [--speed N] [--flow L/h]
#   micropython -i boards/unix/device.py STATE_DIR --repl [...]
#
# STATE_DIR holds the meter's config.json and secrets.json (written by
# tools/simmeter.py or `headend.py provision`); the firmware reads them as it
# would on a board and nothing here overrides them. The board's RTC resumes
# from STATE_DIR/rtc (boards/unix/rtc.py). With -i and --repl the
# technician's REPL is at the prompt; without them the process runs until
# interrupted (SIGINT: the meter saves on the way out).
import sys
import time

import _thread

import main
from boards.unix import rtc
from boards.unix.clock import EPOCH_2026


def _args(argv):
    opts = {"state": None, "speed": 1, "flow": 0, "repl": False}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--speed", "--flow"):
            i += 1
            opts[a[2:]] = int(argv[i])
        elif a == "--repl":
            opts["repl"] = True
        else:
            opts["state"] = a
        i += 1
    if opts["state"] is None:
        print("usage: micropython [-i] boards/unix/device.py STATE_DIR [--speed N] [--flow L/h] [--repl]")
        sys.exit(2)
    return opts


def _keep_time(state, clock, forever):
    # the RTC's backup cell: about once a second of real time
    while True:
        try:
            try:
                rtc.save(state, clock.time())
            except OSError:
                pass              # a full disk: the log's newest event still bounds it
            time.sleep(1)
        except KeyboardInterrupt:
            if not forever:
                rtc.save(state, clock.time())
                return
            # Ctrl-C at the REPL is the technician's, not the RTC's


_o = _args(sys.argv)
_session = main.boot("unix", state_dir=_o["state"], speed=_o["speed"],
                     start=rtc.resume(_o["state"], EPOCH_2026))
if _session is None:
    sys.exit(1)
_hw = _session.hw
if _o["flow"]:
    with _session.ticker.hold():      # the models change only between the meter's slices
        _hw.world.flow.set_rate_lph(_o["flow"])
if _o["repl"]:
    _thread.start_new_thread(_keep_time, (_o["state"], _hw.clock, True))
    from service import *  # noqa: F401,F403 - the technician's commands at the prompt
else:
    _keep_time(_o["state"], _hw.clock, False)   # until SIGINT; the meter saves at exit
