"""make sim: the meter firmware on the simulated board, with a real broker.

    python tools/sim.py [SCENARIO] [--interactive] [--speed N]

Starts Mosquitto (or amqtt when Mosquitto is absent) on a free loopback
port, runs boards/unix/simrun.py in the MicroPython unix port, prints what
the meter does, and plays the head-end's part when the scenario asks for it
(a signed region tariff broadcast).
"""

import argparse
import hmac
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from broker import Broker  # noqa: E402

# The simulator's own region key. It exists only in this simulated world: a
# real meter gets its keys at provisioning and accepts no built-in key.
SIM_REGION_KEY = hashlib.sha256(b"simulator region key, not for production").digest()


def micropython_env():
    path = [".frozen", ROOT / "firmware", ROOT, ROOT / "build" / "lib"]
    return dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))


def publish_tariff(host, port, region, tariff_json):
    topic = "r/%d/tariff" % region
    body = tariff_json.encode()
    mac = hmac.new(SIM_REGION_KEY, topic.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-headend")
    c.connect(host, port)
    c.loop_start()
    c.publish(topic, body + b"|" + mac.encode(), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    print("[headend] published signed tariff to %s: %s" % (topic, tariff_json), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="day")
    ap.add_argument("--interactive", action="store_true")
    ap.add_argument("--speed", type=int, default=300, help="simulated seconds per real second")
    ap.add_argument("--state", default=str(ROOT / "sim-state"))
    args = ap.parse_args(argv)
    shutil.rmtree(args.state, ignore_errors=True)  # each run starts from a new meter
    with Broker() as broker:
        print("[sim] broker: %s on %s:%d" % (broker.kind, broker.host, broker.port), flush=True)
        cmd = [str(ROOT / ".venv" / "bin" / "micropython"), str(ROOT / "boards" / "unix" / "simrun.py"),
               args.scenario, "--port", str(broker.port), "--speed", str(args.speed),
               "--state", args.state, "--region-key", SIM_REGION_KEY.hex()]
        if args.interactive:
            cmd.append("--interactive")
        proc = subprocess.Popen(
            cmd, cwd=str(ROOT), env=micropython_env(), stdout=subprocess.PIPE, text=True,
            stdin=None if args.interactive else subprocess.DEVNULL,
        )
        try:
            for line in proc.stdout:
                if line.startswith("!headend tariff "):
                    _, _, region, body = line.rstrip("\n").split(" ", 3)
                    publish_tariff(broker.host, broker.port, int(region), body)
                else:
                    print(line, end="", flush=True)
        except KeyboardInterrupt:
            proc.terminate()
        rc = proc.wait()
    return rc


if __name__ == "__main__":
    sys.exit(main())
