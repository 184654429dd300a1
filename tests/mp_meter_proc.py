# A meter process for the MQTT integration tests and the bench: the firmware
# on the unix board, started by main.boot() as on a device, so the meter and
# its link run on the board's thread while this main thread steers the world.
#
#   micropython tests/mp_meter_proc.py STATE_DIR SPEED [STATUS_MS]
#
# STATE_DIR holds config.json and secrets.json (headend.py provision). The
# test steers the process through STATE_DIR/ctl.json ({"flow": L/h,
# "stop": 1}) and reads STATE_DIR/status.json, rewritten every STATUS_MS
# (default 100) milliseconds of real time. STATE_DIR/board.json, if there,
# holds more options of the unix board (the OTA flash: ota_dir, ota_slot).
import json
import os
import sys
import time

import main


def _write_status(path, meter, link):
    s = meter.snapshot()
    tr = link.transport
    s["connected"] = 1 if link.connected else 0
    s["connects"] = link.connects
    s["failures"] = link.failures
    s["outbox"] = link.outbox.count
    s["ob_next"] = link.outbox.next_seq
    s["summarised"] = link.outbox.summarised
    s["sent"] = link.sent
    s["rejected"] = link.rejected
    s["cmd_n"] = link.cmd_n
    s["tx"] = tr.tx if tr else 0
    s["rx"] = tr.rx if tr else 0
    s["err"] = link.last_error
    s["delivered"] = meter.hw_delivered()
    if link.ota is not None:
        u = link.ota.updater
        s["ota"] = u.state
        s["fw"] = u.running_version()
        s["running"] = link.ota.hw.partitions.running
    with open(path + ".new", "w") as f:
        json.dump(s, f)
    os.rename(path + ".new", path)


def control(state_dir, s, period_ms):
    """The test's hand on the world: from the main thread, inside hold()."""
    ctl_path = state_dir + "/ctl.json"
    status = state_dir + "/status.json"
    flow = None
    while True:
        try:
            with open(ctl_path) as f:
                ctl = json.load(f)
        except (OSError, ValueError):
            ctl = {}
        with s.ticker.hold():
            if ctl.get("flow", 0) != flow:
                flow = ctl.get("flow", 0)
                s.hw.world.flow.set_rate_lph(flow)
            if ctl.get("stop"):
                s.link.disconnect()
                s.meter.save()
            _write_status(status, s.meter, s.link)
        if ctl.get("stop"):
            s.ticker.stop()
            sys.exit(0)
        time.sleep_ms(period_ms)


def run(state_dir, speed, status_ms):
    t0 = time.ticks_ms()

    def ready(s):
        s.meter.hw_delivered = s.hw.world.flow.delivered_ml
    opts = {}
    try:
        with open(state_dir + "/board.json") as f:
            opts = json.load(f)      # more board options: the OTA flash (ota_dir, ota_slot)
    except OSError:
        pass
    # "board": the unix board under another board's name, a second board
    # model in the region (its own manifest topic, docs/OTA.md §4)
    name = opts.pop("board", "unix")
    if name != "unix":
        import boards
        import boards.unix
        setattr(boards, name, boards.unix)
        sys.modules["boards." + name] = boards.unix
    s = main.boot(name, ready=ready, state_dir=state_dir, speed=speed, **opts)
    if s is None or s.link is None:
        sys.exit(1)                  # boot() has said why
    print("meter", s.meter.cfg["meter_id"], "up, speed", speed, time.ticks_diff(time.ticks_ms(), t0), "ms")
    control(state_dir, s, status_ms)


run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 100)
