"""make sim: the meter firmware on the simulated board, with a real broker.

    python tools/sim.py [SCENARIO] [--interactive] [--speed N] [--broker KIND]

Starts Mosquitto (or amqtt when Mosquitto is absent) on a free loopback
port; provisions a simulated meter with the reference head-end
(tools/headend.py: keys, broker settings) and the vending tool
(tools/cardtool.py: card keys and the scenario's cards); runs
boards/unix/simrun.py in the MicroPython unix port, which boots the meter
with main.boot() as a board does; prints what the meter
does; and plays the utility's side when the scenario asks: a signed region
tariff, an online top-up, a broker outage, a card top-up at the office.
"""

import argparse
import ast
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "boards" / "unix"))
sys.path.append(str(ROOT))           # utility/: the console while the scenario plays
from broker import Broker
from headend import HeadEnd, HeadEndError
from office import OfficeKey

from utility import money

# The simulated utility's master key. It exists only in this simulated
# world: a real meter gets its keys at provisioning and accepts no built-in key.
SIM_START = 1767603600     # boards/unix/scenarios.py START: the simulated clock's origin
SIM_MASTER = hashlib.sha256(b"simulator master key, not for production").digest()
CARDTOOL = [sys.executable, str(ROOT / "tools" / "cardtool.py"), "--test-keys"]
METER_ID, REGION = "M000001", 1
IMAGE_BYTES = 160_000      # the ota scenario's image, kept short for the demo (a frozen ESP32 image is ~1.6 MB: bench/bench_ota.py)


def _scenarios_table():
    """SCENARIOS of boards/unix/scenarios.py as {name: its (start, steps) node},
    and every top-level assignment by name, read without running the file
    (it is MicroPython: const())."""
    tree = ast.parse((ROOT / "boards" / "unix" / "scenarios.py").read_text())
    names = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    if "SCENARIOS" not in names:
        raise SystemExit("boards/unix/scenarios.py has no SCENARIOS table")
    table = names["SCENARIOS"]
    return {k.value: v for k, v in zip(table.keys, table.values)}, names


def scenario_names():
    return list(_scenarios_table()[0])


def scenario_cards(name):
    """The cards a scenario puts on the reader (its "card" steps), in order."""
    table, names = _scenarios_table()
    steps = table[name].elts[1]
    steps = names.get(getattr(steps, "id", None), steps)
    cards = []
    for node in ast.walk(steps):
        if (isinstance(node, ast.Tuple) and len(node.elts) == 3 and isinstance(node.elts[1], ast.Constant)
                and node.elts[1].value == "card" and node.elts[2].value not in cards):
            cards.append(node.elts[2].value)
    return cards


# what the office issues (provision), as the narrative names them
CARDS = {"user": "user (5.00)", "clone": "a copy of the user card made before its first tap",
         "foreign": "a user card of another region (1.00)",
         "forged-tariff": "a tariff card forged from a meter's dump (price 0)",
         "check": "a check card (collects the meter's reading)"}


def micropython_env():
    path = [".frozen", ROOT / "firmware", ROOT, ROOT / "build" / "lib"]
    return dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))


def cardtool(*args):
    p = subprocess.run(CARDTOOL + [str(a) for a in args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit("cardtool {} failed: {}".format(" ".join(map(str, args)), p.stderr or p.stdout))
    return p.stdout


def provision(state, broker):
    """A new simulated meter: MQTT keys and broker settings from the head-end,
    card keys from the public test issuer (the simulator is a test build), and
    the scenario's cards issued by the vending tool as the office would."""
    from card.keys import testing_issuer

    office = Path(state) / "office.pem"      # the office's signing key stays host-side
    if not office.exists():
        OfficeKey.generate().save(office)
    he = HeadEnd(Path(state) / "headend.db", SIM_MASTER, broker.host, broker.port,
                 client_id="sim-headend", persistent=True, office=office)
    he.provision(METER_ID, REGION, state, {"host": broker.host, "port": broker.port, "tls": False,
                                           "keepalive": 60})
    cp = Path(state) / "config.json"
    cfg = json.loads(cp.read_text())
    cfg["report_s"] = 900              # a telemetry record every 15 simulated minutes
    cp.write_text(json.dumps(cfg))
    sp = Path(state) / "secrets.json"
    secrets = json.loads(sp.read_text())
    secrets["card"] = testing_issuer().meter_secrets(METER_ID)
    sp.write_text(json.dumps(secrets))
    cards = Path(state) / "cards"
    cards.mkdir(parents=True)
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
    cardtool("--office", office, "issue", check, "check", "--region", REGION, "--start", SIM_START)
    forged = cards / "forged-tariff.json"
    cardtool("new", "--uid", "f0f1f2f3", forged)
    forge_tariff_card(forged)
    return he, cards


def forge_tariff_card(path):
    """The issue-10 attack: a tariff card made from what a dump of a meter
    holds (its secrets.json: its own keys and the office's PUBLIC key), at
    price 0. Its version is the next one, so the meter's cheap checks pass
    and the signature decides: without the office's private key the forger
    can only sign with a key of their own, and the meter answers
    `signature`. (Version 2^31-1, as in the issue, is refused even before
    that, as `range`: tests/mp/test_attack_authority.py.)"""
    from card import records as R
    from card import signed_card as SC
    from card.keys import IssuerKeys
    from mifare_card import ClassicCard

    doc = {"k": "tariff", "r": REGION, "v": 3, "at": 0, "b": [[0, 0]], "sc": 0}
    body = json.dumps(doc, separators=(",", ":")).encode()
    sig = OfficeKey.generate().sign(SC.purpose(R.CARD_TARIFF), body)
    card = ClassicCard.load(str(path))
    own_b = IssuerKeys(os.urandom(16), os.urandom(16))      # the forger's own key B
    for blk, data in SC.plan_issue(own_b, card.uid, R.CARD_TARIFF, body, sig):
        card.blocks[blk] = bytearray(data)
    card.save(str(path))


def ctrl_c_at_boot(state, micropython):
    """The issue-10 attack on the serial port: a production meter booted with
    Ctrl-C sent at each step of its boot, through a port that delivers Ctrl-C
    as the ESP32's UART does (tools/uartpty.py); then the technician's way in,
    the office's answer to the meter's challenge (docs/SERVICE.md §4)."""
    import re

    from office import office_secrets
    from uartpty import UartMeter

    root = Path(state) / "serial"
    data = root / "data"
    data.mkdir(parents=True)
    (root / "board.txt").write_text(f"unix\nstate_dir={data}\nspeed=20\n")
    (data / "config.json").write_text(json.dumps({"production": True}))
    office = OfficeKey.load(Path(state) / "office.pem")
    (data / "secrets.json").write_text(json.dumps(office_secrets([office])))
    from storage.state import mark_provisioned
    mark_provisioned(str(data))         # as tools/flash.py provision does
    steps = ("board", "meter", "link", "cards", "gate")
    with UartMeter(root, micropython=micropython) as m:
        for step in steps:
            if m.wait_for("boot: " + step, 20):
                m.send(b"\x03")
        m.send(b"\r\nprint('RE' + 'PL-OPEN')\r\n")
        opened = m.wait_for("REPL-OPEN", 2)
        print("[attack] Ctrl-C at each boot step of a production meter ({}): {}; "
              "its Ctrl-C bytes arrived as {}".format(", ".join(steps), "REPL OPENED" if opened else
                                                    "refused, REPL closed, meter running",
                                                    "/".join(sorted(set(m.deliveries)))), flush=True)
        m.send(b"svc\r\n")
        found = m.wait_for("svc-challenge", 10) and m.wait_for("\n", 2) and re.findall(
            r"svc-challenge (\S+) (\d+) ([0-9a-f]{32})", m.output())
        if found:
            mid, n, nonce = found[-1]
            sig = office.sign(b"svc", f"{mid} {n} {nonce} 5".encode()).hex()
            m.send(f"svc-open 5 {sig}\r\n".encode())
            ok = m.wait_for("service open for 5 min", 15)
            print("[office] technician: challenge {} {} {}... answered with the office key: {}"
                  .format(mid, n, nonce[:8], "REPL open for 5 min" if ok else "refused"), flush=True)
    return not opened


def utility(line, he, broker, cards):
    """Carry out one request of the scenario ("!..." line). Returns True when
    the simulator waits for an answer on its stdin."""
    words = line.split(" ", 3)
    if words[0] == "!vend":                       # !vend topup NAME AMOUNT
        _, _, name, amount = line.split()
        try:
            cardtool("topup", cards / f"{name}.json", "--amount", amount)
            print(f"[office] {name} card topped up with {money.fmt(int(amount))} ({int(amount)} units)",
                  flush=True)
        except SystemExit as e:
            print(f"[office] top-up refused: {e}", flush=True)
        return True
    if words[0] == "!headend" and words[1] == "tariff":   # !headend tariff REGION JSON
        he.publish_tariff(json.loads(words[3]), region=int(words[2]))
        print(f"[headend] published signed tariff to r/{words[2]}/tariff: {words[3]}", flush=True)
    elif words[0] == "!headend" and words[1] == "topup":  # !headend topup AMOUNT
        try:
            he.topup(METER_ID, int(words[2]), account=1, timeout=None)
            print(f"[headend] online top-up of {money.fmt(int(words[2]))} ({int(words[2])} units) sent to "
                  f"{METER_ID}", flush=True)
        except HeadEndError as e:
            print(f"[headend] top-up not sent: {e}", flush=True)
    elif words[0] == "!headend" and words[1] in ("ota", "ota-forged", "ota-check"):
        ota_request(words[1:], he)
    elif words[0] == "!sync":                      # the simulator waits until the broker has it all
        he.flush()
        return True
    elif words[0] == "!outage" and words[1] == "start":
        broker.stop()
        print("[sim] broker down: the meter meters on, telemetry waits in its outbox", flush=True)
    elif words[0] == "!outage" and words[1] == "end":
        broker.start()
        he.connect()
        print("[sim] broker back", flush=True)
    return False


_snapshots = [0]
_rollouts = []


def ota_request(words, he):
    """The head-end's side of the ota scenario: a rollout of a simulated
    image of IMAGE_BYTES to every group, a forged manifest, or a check of
    the rollout's failure rule (tools/rollout.py)."""
    from rollout import Rollout, board_topic, manifest, sim_image
    if words[0] == "ota-check":
        r = _rollouts[-1]
        st = r.check()
        print(f"[headend] rollout of version {r.version}: {st} {r.tally()}", flush=True)
        return
    v = int(words[1])
    fault = 1 if words[-1] == "broken" else 0
    board = "unix_battery" if "unix_battery" in words else "unix"    # the battery scenario's board
    body = bytes((i * 7 + v) & 0xFF for i in range(IMAGE_BYTES))
    img = sim_image(body, fault)
    if words[0] == "ota-forged":
        forger = OfficeKey.generate()         # a key the meter does not hold
        doc = json.dumps(manifest(img, v, board, 3), separators=(",", ":")).encode()
        he._need_client().publish(board_topic(REGION, board), doc + b"|" + forger.sign(b"ota", doc).hex().encode(),
                                  qos=1, retain=True).wait_for_publish(10)
        print(f"[headend] a forged manifest of version {v} published on {board_topic(REGION, board)}", flush=True)
        return
    r = Rollout(he, img, v, board, REGION)
    r.start(3)
    _rollouts.append(r)
    print(f"[headend] rollout of version {v} ({len(img)} bytes{', broken card driver' if fault else ''})"
          f" to all groups on {board_topic(REGION, board)}", flush=True)


def lcd_snapshot(words, png_dir):
    """"!lcd HEX LIT" from the simulator: the glass's RAM image, drawn to
    png_dir/lcd-NNNN.png when asked (a dark glass draws blank)."""
    if not png_dir:
        return
    import lcdpng
    _snapshots[0] += 1
    Path(png_dir).mkdir(parents=True, exist_ok=True)
    lcdpng.write(words[1], Path(png_dir) / f"lcd-{_snapshots[0]:04d}.png", lit=words[2] == "1")


def serve_console(he, port=0):
    """The utility's console (utility/web) on the head-end's store while the
    scenario plays, with the customers' top-up page and the test-side payment
    provider behind it (utility/provider_stub.py): plain HTTP on loopback,
    an operator login made for this run. Returns the servers, to close."""
    import secrets as tokens

    from utility.provider_stub import create_provider
    from utility.serve import Served
    from utility.web import create_app
    from utility.web.auth import add_user

    shared = tokens.token_bytes(32)          # the simulated provider's webhook secret
    provider = Served(create_provider(None, shared))
    db = he.engine.url.render_as_string(hide_password=False)
    site = Served(create_app(db, headend=he, SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False,
                             PAYMENT_SECRET=shared, PAYMENT_CHECKOUT_URL=provider.url + "/checkout",
                             PAYMENT_REFUND_URL=provider.url + "/refunds"), port=port)
    provider.app.config["WEBHOOK_URL"] = site.url + "/payments/webhook"
    password = tokens.token_urlsafe(9)
    add_user(he.engine, "operator", password, "operator")
    print(f"[console] {site.url}/ : log in as operator, password {password}; "
          f"customers top up at {site.url}/pay", flush=True)
    return site, provider


def _finish(proc, state):
    """After a Ctrl-C: the meter is told to stop through DIR/sim-stop, as a
    signal could kill it (its own session keeps the terminal's Ctrl-C from
    it: the unix port's masked Ctrl-C is SIG_DFL), and closes its books
    (simrun.py prints its summary). Show what it still prints; end it if it
    does not end by itself, or at a second Ctrl-C."""
    (Path(state) / "sim-stop").touch()
    out = ""
    try:
        out, _ = proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()
    print("".join(ln for ln in (out or "").splitlines(keepends=True) if not ln.startswith("!")),
          end="", flush=True)


def _run_meter(cmd, args, he, broker, cards):
    """One power-up of the simulated meter, until its process ends; None
    when Ctrl-C stopped it."""
    proc = subprocess.Popen(
        cmd, cwd=str(ROOT), env=micropython_env(), stdout=subprocess.PIPE, text=True,
        stdin=None if args.interactive else subprocess.PIPE, start_new_session=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("!lcd "):
                lcd_snapshot(line.split(), args.png)
            elif line.startswith("boot: ") and args.scenario == "battery":
                continue            # every wake is a boot: its steps would bury the story
            elif line.startswith("!"):
                if utility(line.strip(), he, broker, cards) and proc.stdin:
                    proc.stdin.write("ok\n")
                    proc.stdin.flush()
            else:
                print(line, end="", flush=True)
    except KeyboardInterrupt:
        _finish(proc, args.state)
        return None
    return proc.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="day", choices=scenario_names(),
                    help="boards/unix/scenarios.py (default: day)")
    ap.add_argument("--interactive", action="store_true")
    ap.add_argument("--speed", type=int, default=300, help="simulated seconds per real second")
    ap.add_argument("--state", default=str(ROOT / "sim-state"))
    ap.add_argument("--micropython",
                    default=os.environ.get("MICROPYTHON", str(ROOT / ".venv" / "bin" / "micropython")),
                    help="the unix port to run (e.g. a 32-bit frozen build, bench/bench_ram.py)")
    ap.add_argument("--heap", help="the unix port's heap size, e.g. 96K (-X heapsize)")
    ap.add_argument("--ram-probe", action="store_true",
                    help="sample the live heap while it runs (bench/mp_ramprobe.py)")
    ap.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                    help="auto: Mosquitto when installed, else amqtt from PyPI")
    ap.add_argument("--console-port", type=int, default=0,
                    help="the console's port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--png", metavar="DIR",
                    help="write a PNG snapshot of the LCD each time it changes (tools/lcdpng.py)")
    args = ap.parse_args(argv)
    shutil.rmtree(args.state, ignore_errors=True)  # each run starts from a new meter
    Path(args.state).mkdir(parents=True)
    with Broker(None if args.broker == "auto" else args.broker) as broker:
        print(f"[sim] broker: {broker.kind} on {broker.host}:{broker.port}", flush=True)
        he, cards = provision(args.state, broker)
        he.connect()
        used = list(CARDS) if args.interactive else scenario_cards(args.scenario)
        print("[office] meter provisioned (keys, broker settings); " + (
            "cards for this scenario: " + ", ".join(CARDS[c] for c in used) if used else
            "this scenario uses no card"), flush=True)
        servers = serve_console(he, args.console_port)
        cmd = [args.micropython] + (["-X", "heapsize=" + args.heap] if args.heap else [])
        if args.ram_probe:
            cmd.append(str(ROOT / "bench" / "mp_ramprobe.py"))
        if args.scenario == "battery":
            # the battery board: a boot per wake (boards/unix/simbattery.py),
            # the ULP program assembled as for a deploy (tools/ulp_build.py)
            from ulp_build import UlpBuildError
            from ulp_build import build as build_ulp
            try:
                ulp = build_ulp(Path(args.state) / "counter.ulp")
            except UlpBuildError as e:
                sys.exit(f"[sim] {e}")
            cmd += [str(ROOT / "boards" / "unix" / "simbattery.py"), args.scenario,
                    "--state", args.state, "--ulp", str(ulp)]
        else:
            cmd += [str(ROOT / "boards" / "unix" / "simrun.py"), args.scenario,
                    "--speed", str(args.speed), "--state", args.state]
        if args.interactive:
            cmd.append("--interactive")
        while True:
            rc = _run_meter(cmd, args, he, broker, cards)
            if rc != -signal.SIGTERM or args.scenario != "ota":
                break
            # the firmware reset the board (hw.reset): power it up again
            print("[sim] the meter reset itself: it boots again from its flash", flush=True)
        for s in servers:
            s.close()
        he.close()
    if args.png:
        n = _snapshots[0]
        print(f"[sim] {n} LCD picture{'' if n == 1 else 's'} in {args.png}/ (lcd-NNNN.png, one per change)",
              flush=True)
    if rc is None:
        # Ctrl-C: how an interactive run ends besides quit; a scenario cut short did not finish
        print("[sim] stopped by Ctrl-C; broker and console closed", flush=True)
        return 0 if args.interactive else 130
    if rc == 0 and not args.interactive and not ctrl_c_at_boot(args.state, args.micropython):
        rc = 1
    check = cards / "check.json"
    if rc == 0 and check.exists():
        text = cardtool("read", check).rstrip()
        if json.loads(text).get("readings"):          # only if the scenario tapped it
            print("[office] check card read back:")
            print(text)
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:          # before the meter started, or in the closing attack demo
        print("\n[sim] stopped by Ctrl-C", flush=True)
        sys.exit(130)
