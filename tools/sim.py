"""make sim: the meter firmware on the simulated board, with a real broker.

    python tools/sim.py [SCENARIO] [--interactive] [--speed N]

Starts Mosquitto (or amqtt when Mosquitto is absent) on a free loopback
port, runs boards/unix/simrun.py in the MicroPython unix port, prints what
the meter does, and plays the head-end's part when the scenario asks for it
(a signed region tariff broadcast).
"""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from broker import Broker

# The simulator's own region key. It exists only in this simulated world: a
# real meter gets its keys at provisioning and accepts no built-in key.
SIM_REGION_KEY = hashlib.sha256(b"simulator region key, not for production").digest()


def micropython_env():
    path = [".frozen", ROOT / "firmware", ROOT, ROOT / "build" / "lib"]
    return dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))


def publish_tariff(host, port, region, tariff_json):
    topic = f"r/{region}/tariff"
    body = tariff_json.encode()
    mac = hmac.new(SIM_REGION_KEY, topic.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-headend")
    c.connect(host, port)
    c.loop_start()
    c.publish(topic, body + b"|" + mac.encode(), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    print(f"[headend] published signed tariff to {topic}: {tariff_json}", flush=True)


CARDTOOL = [sys.executable, str(ROOT / "tools" / "cardtool.py"), "--test-keys"]
METER_ID, REGION = "M000001", 1


def cardtool(*args):
    p = subprocess.run(CARDTOOL + [str(a) for a in args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit("cardtool {} failed: {}".format(" ".join(map(str, args)), p.stderr or p.stdout))
    return p.stdout


def provision(state):
    """A new simulated meter: card keys from the public test issuer (the
    simulator is a test build), and the cards of the scenario, issued by the
    vending tool exactly as the office would."""
    sys.path.insert(0, str(ROOT / "firmware"))
    from card.keys import testing_issuer

    cards = Path(state) / "cards"
    cards.mkdir(parents=True)
    secrets = {"card": testing_issuer().meter_secrets(METER_ID, REGION)}
    (Path(state) / "secrets.json").write_text(json.dumps(secrets))
    user = cards / "user.json"
    cardtool("new", "--uid", "11223344", user)
    cardtool("issue", user, "user", "--meter", METER_ID, "--region", REGION, "--account", 42,
             "--amount", 500_000)
    shutil.copy(user, cards / "clone.json")        # copied before its first tap
    foreign = cards / "foreign.json"
    cardtool("new", "--uid", "55667788", foreign)
    cardtool("issue", foreign, "user", "--meter", METER_ID, "--region", 2, "--account", 43,
             "--amount", 100_000)
    check = cards / "check.json"
    cardtool("new", "--uid", "a1b2c3d4", check)
    cardtool("issue", check, "check", "--region", REGION)
    return cards


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="day")
    ap.add_argument("--interactive", action="store_true")
    ap.add_argument("--speed", type=int, default=300, help="simulated seconds per real second")
    ap.add_argument("--state", default=str(ROOT / "sim-state"))
    ap.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                    help="auto: Mosquitto when installed, else amqtt from PyPI")
    args = ap.parse_args(argv)
    shutil.rmtree(args.state, ignore_errors=True)  # each run starts from a new meter
    cards = provision(args.state)
    print("[office] issued cards: user (5.00), clone of it, foreign-region user, check", flush=True)
    with Broker(None if args.broker == "auto" else args.broker) as broker:
        print(f"[sim] broker: {broker.kind} on {broker.host}:{broker.port}", flush=True)
        cmd = [str(ROOT / ".venv" / "bin" / "micropython"), str(ROOT / "boards" / "unix" / "simrun.py"),
               args.scenario, "--port", str(broker.port), "--speed", str(args.speed),
               "--state", args.state, "--region-key", SIM_REGION_KEY.hex()]
        if args.interactive:
            cmd.append("--interactive")
        proc = subprocess.Popen(
            cmd, cwd=str(ROOT), env=micropython_env(), stdout=subprocess.PIPE, text=True,
            stdin=None if args.interactive else subprocess.PIPE,
        )
        try:
            for line in proc.stdout:
                if line.startswith("!vend topup "):
                    _, _, name, amount = line.split()
                    try:
                        cardtool("topup", cards / (f"{name}.json"), "--amount", amount)
                        print(f"[office] {name} card topped up with {int(amount)} units", flush=True)
                    except SystemExit as e:
                        print(f"[office] top-up refused: {e}", flush=True)
                    proc.stdin.write("ok\n")
                    proc.stdin.flush()
                elif line.startswith("!headend tariff "):
                    _, _, region, body = line.rstrip("\n").split(" ", 3)
                    publish_tariff(broker.host, broker.port, int(region), body)
                else:
                    print(line, end="", flush=True)
        except KeyboardInterrupt:
            proc.terminate()
        rc = proc.wait()
    check = cards / "check.json"
    if rc == 0 and check.exists():
        text = cardtool("read", check).rstrip()
        if json.loads(text).get("readings"):          # only if the scenario tapped it
            print("[office] check card read back:")
            print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
