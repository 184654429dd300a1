# A meter process for the MQTT integration tests and the bench: the firmware
# on the unix board, with its link, run by main.run() as on a device.
#
#   micropython tests/mp_meter_proc.py STATE_DIR SPEED [STATUS_MS]
#
# STATE_DIR holds config.json and secrets.json (headend.py provision). The
# test steers the process through STATE_DIR/ctl.json ({"flow": L/h,
# "stop": 1}) and reads STATE_DIR/status.json, rewritten every STATUS_MS
# (default 100) milliseconds of real time.
import asyncio
import json
import os
import sys
import time

import config
import main

import boards


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
    with open(path + ".new", "w") as f:
        json.dump(s, f)
    os.rename(path + ".new", path)


async def control(state_dir, hw, meter, link, period_ms):
    ctl_path = state_dir + "/ctl.json"
    status = state_dir + "/status.json"
    flow = None
    while True:
        try:
            with open(ctl_path) as f:  # noqa: ASYNC230 - a tiny local file, MicroPython has no aiofiles
                ctl = json.load(f)
        except (OSError, ValueError):
            ctl = {}
        if ctl.get("flow", 0) != flow:
            flow = ctl.get("flow", 0)
            hw.world.flow.set_rate_lph(flow)
        if ctl.get("stop"):
            link.disconnect()
            meter.save()
            _write_status(status, meter, link)
            sys.exit(0)
        _write_status(status, meter, link)
        await asyncio.sleep_ms(period_ms)


def run(state_dir, speed, status_ms):
    hw = boards.load("unix").build(state_dir=state_dir, speed=speed)
    cfg = config.load(state_dir)
    meter = main.assemble(hw, cfg)
    meter.hw_delivered = hw.world.flow.delivered_ml
    link = main.make_link(meter, hw)
    t0 = time.ticks_ms()
    print("meter", cfg["meter_id"], "up, speed", speed, time.ticks_diff(time.ticks_ms(), t0), "ms")
    asyncio.run(main.run(meter, hw, link, [control(state_dir, hw, meter, link, status_ms)]))


run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 100)
