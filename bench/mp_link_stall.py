# The meter loop against one network condition, on the unix port: the
# firmware's own meter_task and comms_task (main.py) in one asyncio loop, as
# on a device, with the link built from comms.net as build_link builds it.
# bench/bench_link_stall.py starts the conditions and runs this:
#
#   micropython bench/mp_link_stall.py STATE_DIR HOST PORT TLS(0/1) CA_DER_FILE|- DNS|- SECONDS
#
# Prints one JSON line: the longest link.step() call, the longest lateness
# of a 10 ms probe task (what the meter loop would see), and the link's
# counters.
import asyncio
import json
import sys
import time

import boards
import main
from comms.link import MqttLink
from comms.net import Dialer
from simkit import make_cfg

MK = b"meter-key-for-tests-0123456789ab"


async def probe(stats, stop_at):
    last = time.ticks_ms()
    while time.ticks_diff(stop_at, time.ticks_ms()) > 0:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        late = time.ticks_diff(now, last) - 10
        if late > stats["late"]:
            stats["late"] = late
        last = now


def run(state_dir, host, port, tls, ca_file, dns, seconds):
    hw = boards.load("unix").build(state_dir=state_dir, speed=1)
    cfg = make_cfg(meter_id="B01", region=1, report_s=60,
                   mqtt={"host": host, "port": port, "tls": tls, "keepalive": 10,
                         "backoff_max_s": 2, "timeout_ms": 3000})
    meter = main.assemble(hw, cfg)
    cadata = None
    if ca_file != "-":
        with open(ca_file, "rb") as f:
            cadata = f.read()
    dialer = Dialer(host, port, cfg["mqtt"]["timeout_ms"], hw.net.wrap_tls if tls else None,
                    cadata, "localhost" if tls else None, None if dns == "-" else dns)

    def factory(cid, _h, _p, ka, user=None, pw=None):
        return dialer.client(cid, ka, user, pw)

    link = MqttLink(cfg, meter, hw.net, hw.clock, factory, meter_key=MK, state_dir=state_dir,
                    transport=dialer)
    stats = {"late": 0, "step": 0, "steps": 0}
    step = link.step

    def timed_step():
        t0 = time.ticks_us()
        step()
        d = time.ticks_diff(time.ticks_us(), t0)
        stats["steps"] += 1
        if d > stats["step"]:
            stats["step"] = d

    link.step = timed_step
    stop_at = time.ticks_add(time.ticks_ms(), seconds * 1000)

    async def body():
        meter_t = asyncio.create_task(main.meter_task(meter, hw))
        comms_t = asyncio.create_task(main.comms_task(link, hw))
        await probe(stats, stop_at)
        meter_t.cancel()
        comms_t.cancel()

    asyncio.run(body())
    print(json.dumps({"max_step_ms": stats["step"] / 1000, "max_late_ms": stats["late"],
                      "steps": stats["steps"], "connects": link.connects,
                      "failures": link.failures, "oversized": link.oversized,
                      "err": link.last_error, "rx": dialer.rx, "tx": dialer.tx}))


a = sys.argv
run(a[1], a[2], int(a[3]), a[4] == "1", a[5], a[6], int(a[7]))
