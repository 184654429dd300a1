# A battery meter process for the MQTT tests: the firmware booted by
# main.boot("unix_battery") wake after wake on one Plant (the water, the
# valve, the ULP and the clock outlive a deep sleep), as on the chip, where
# every wake is a fresh boot. The network is real: the Plant's blocking
# delays take real time too, so a reporting window waits for the broker.
#
#   micropython tests/mp_battery_proc.py STATE_DIR
#
# Before each deep sleep the process writes STATE_DIR/status.json and waits
# for the test's go-ahead in STATE_DIR/ctl.json: {"go": N} lets the Nth
# sleep run (until the ULP, the RTC timer or a button press wakes the CPU);
# {"press": [N, ms]} presses the button ms into the Nth sleep; {"cut": 1}
# holds the process at the first credit the meter applies (durable, not yet
# acknowledged) and prints CUT, so the test can kill it there (a power cut);
# {"stop": 1} ends it. STATE_DIR/plant.json keeps the virtual time, so a
# process started after a kill powers up later than the last one saw.
import json
import sys
import time

import codes
import main
from boards.unix_battery import Plant
from ulpkit import binary


class HeldPlant(Plant):
    """The CPU's deep sleep starts only when the test says so."""

    def deepsleep(self, ms, button=True):
        self.pending_ms = ms
        self.pending_button = button


def _ctl(d):
    try:
        with open(d + "/ctl.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write(path, obj):
    with open(path + ".new", "w") as f:
        json.dump(obj, f)
    import os
    os.rename(path + ".new", path)


def _status(d, m, plant, sleeps):
    s = m.snapshot()
    w, c = m.window, m.cell
    s.update({"boots": plant.boots, "sleeps": sleeps, "reason": plant.wake_reason,
              "sleep_ms": plant.pending_ms, "w_next": w.next, "w_last": w.last, "polls": w.polls,
              "used_uas": c.used, "pct": c.level_pct(), "days": c.days_left(s["t"]),
              "credits": [e for e in m.log.since(0) if e[2] == codes.EV_CREDIT],
              "ledger": m.ledger.to_state(), "windows": plant.windows})
    _write(d + "/status.json", s)
    _write(d + "/plant.json", {"t": s["t"]})


def run(d):
    try:
        with open(d + "/plant.json") as f:
            start = json.load(f)["t"] + 60       # powered up again a minute later
    except (OSError, ValueError, KeyError):
        start = None
    plant = HeldPlant(real_time=True) if start is None else HeldPlant(start=start, real_time=True)
    plant.pending_ms = 0
    plant.windows = 0
    make_link = main.make_link

    def link_for_test(meter, hw):
        # the firmware's own link; the test only watches its credits
        link = make_link(meter, hw)
        plant.windows += 1
        if _ctl(d).get("cut"):
            def hold(ev):
                if ev[2] == codes.EV_CREDIT:
                    print("CUT", ev[1], ev[3])   # durable (saved before the event), no ack yet
                    while True:
                        time.sleep_ms(1000)     # the test kills the process here
            meter.log.listeners.append(hold)
        return link
    main.make_link = link_for_test
    sleeps = 0
    while True:
        m = main.boot("unix_battery", state_dir=d, plant=plant, ulp_binary=binary())
        if m is None:
            sys.exit(1)                           # boot() has said why
        _status(d, m, plant, sleeps)
        while True:
            ctl = _ctl(d)
            if ctl.get("stop"):
                sys.exit(0)
            if ctl.get("go", 0) > sleeps:
                break
            time.sleep_ms(50)
        sleeps += 1
        press = ctl.get("press")
        plant.press_button(press[1] if press and press[0] == sleeps else None)
        Plant.deepsleep(plant, plant.pending_ms, plant.pending_button)


run(sys.argv[1])
