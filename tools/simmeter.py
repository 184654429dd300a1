"""Simulated meters for an integrator: the firmware on the unix board, booted
as a device boots, against a broker and with keys of one's own
(docs/INTEGRATION.md).

One meter, keys from a secrets file (as `headend.py provision` writes it;
--office adds the office's public keys, for office-signed region tariffs):

    python tools/simmeter.py --state DIR --secrets FILE --region R \\
        --broker HOST:PORT [--tls --ca CA.pem [--tls-host NAME]] [--speed N] [--flow L/h] [--repl]

A fleet of N, keys derived from a master key file (docs/PROTOCOL.md §4.2),
meters PREFIX0001 ... in DIR/PREFIX0001 ...:

    python tools/simmeter.py --state DIR --master FILE --fleet N [--prefix SIM] --region R \\
        --broker HOST:PORT [--tls --ca CA.pem] [--office OFFICE.json] [--card-keys ISSUER.json] \\
        [--broker-files BDIR --headend-password PW]

A meter's directory keeps its config.json (whatever the head-end changed),
its state and its clock (DIR/rtc) across restarts; only the broker settings
given on the command line are written into config.json's "mqtt". Runs until
Ctrl-C, then each meter saves and stops.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tools"))
from comms import sign
from storage.state import mark_provisioned

MICROPYTHON = os.environ.get("MICROPYTHON", str(ROOT / ".venv" / "bin" / "micropython"))


def micropython_env():
    path = [".frozen", ROOT / "firmware", ROOT, ROOT / "build" / "lib"]
    return dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))


def fleet_secrets(master, meter_id):
    """secrets.json of one meter, derived as docs/PROTOCOL.md §4.2 says."""
    return {"id": meter_id, "mk": sign.meter_key(master, meter_id).hex(), "user": meter_id,
            "pw": sign.mqtt_password(master, meter_id), "ca": None}


def _write_private(path, obj):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)


def prepare(d, secrets, region, mqtt, ca_pem):
    """Write the meter's secrets.json; create its config.json, or keep it and
    set only its "mqtt" entry. Returns the meter id."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    sec = dict(secrets)
    if ca_pem is not None:
        sec["ca"] = ca_pem
    if mqtt.get("tls") and not sec.get("ca"):
        raise SystemExit("simmeter: --tls needs --ca (or a \"ca\" in the secrets file)")
    _write_private(d / "secrets.json", sec)
    cp = d / "config.json"
    if cp.exists():
        cfg = json.loads(cp.read_text())
    else:
        if region is None:
            raise SystemExit(f"simmeter: {d} is a new meter: give --region")
        cfg = {"meter_id": sec["id"], "region": region}
        mark_provisioned(str(d))    # the first state copy, as tools/flash.py provision writes it
    if mqtt:
        m = dict(cfg.get("mqtt", {}))
        m.update(mqtt)
        cfg["mqtt"] = m
    if "mqtt" not in cfg:
        raise SystemExit(f"simmeter: {d} has no broker yet: give --broker")
    tmp = cp.with_suffix(".new")
    tmp.write_text(json.dumps(cfg))
    os.replace(tmp, cp)
    return cfg["meter_id"]


def broker_files(bdir, meters, headend_password):
    """Mosquitto password and ACL files for the fleet and the head-end user."""
    from broker import meter_acl, password_line
    bdir = Path(bdir)
    bdir.mkdir(parents=True, exist_ok=True)
    lines = [password_line(m, pw) for m, (_, pw) in meters.items()]
    lines.append(password_line("headend", headend_password))
    (bdir / "passwd").write_text("\n".join(lines) + "\n")
    (bdir / "acl").write_text(meter_acl({m: r for m, (r, _) in meters.items()}, ["headend"]))
    return bdir / "passwd", bdir / "acl"


def command(d, speed, flow=0, repl=False):
    """The meter's own command line (what this tool runs, with micropython_env())."""
    cmd = [MICROPYTHON] + (["-i"] if repl else []) + [
        str(ROOT / "boards" / "unix" / "device.py"), str(Path(d).resolve()), "--speed", str(speed)]
    if flow:
        cmd += ["--flow", str(flow)]
    return cmd + (["--repl"] if repl else [])


def load_office(path):
    """The office's public keys for the meters' secrets: the JSON that
    `headend.py init` writes (DB.office-public.json), checked."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"simmeter: --office {path}: {e}: use the DB.office-public.json of "
                         "headend.py init") from None
    keys = d.get("office") if isinstance(d, dict) else None
    if not (isinstance(keys, dict) and keys and all(
            k.isdigit() and isinstance(v, str) and len(v) == 128 for k, v in keys.items())
            and isinstance(d.get("office_min_rev", 0), int)):
        raise SystemExit(f'simmeter: --office {path} is not {{"office": {{"<rev>": "<128 hex>"}}, '
                         '"office_min_rev": r}: use the DB.office-public.json of headend.py init')
    return {"office": keys, "office_min_rev": d.get("office_min_rev", 1)}


def _mqtt_args(args):
    m = {}
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"simmeter: --broker wants HOST:PORT, got {args.broker!r}")
        m.update(host=host, port=int(port), tls=bool(args.tls))
        if args.tls_host:
            m["tls_host"] = args.tls_host
    if args.keepalive:
        m["keepalive"] = args.keepalive
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(prog="simmeter.py", description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, help="the meter's directory (a fleet: their parent)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--secrets", help="one meter: its secrets.json (id, mk, user, pw[, ca, office])")
    g.add_argument("--master", help="a fleet: the master key file (64 hex digits)")
    ap.add_argument("--fleet", type=int, default=0, help="number of meters (with --master)")
    ap.add_argument("--office", help="JSON merged into each secrets.json: the office's public keys "
                    '{"office": {"<rev>": "<128 hex>"}, "office_min_rev": r}')
    ap.add_argument("--card-keys", metavar="ISSUER.json",
                    help="the vending station's issuer key file {rev, mb, mr}: each meter gets "
                    "its card keys (docs/CARD.md 3.2), so cards from cardtool.py --keys open")
    ap.add_argument("--prefix", default="SIM", help="fleet meter ids: PREFIX0001 ...")
    ap.add_argument("--region", type=int, help="region of a new meter")
    ap.add_argument("--broker", help="HOST:PORT of the broker")
    ap.add_argument("--tls", action="store_true", help="connect with TLS (verifying --ca)")
    ap.add_argument("--ca", help="PEM of the CA that signed the broker's certificate")
    ap.add_argument("--tls-host", help="name in the broker's certificate (default: HOST)")
    ap.add_argument("--keepalive", type=int, help="MQTT keepalive, seconds")
    ap.add_argument("--speed", type=int, default=1, help="simulated seconds per real second")
    ap.add_argument("--flow", type=int, default=0, help="water drawn, litres per hour")
    ap.add_argument("--repl", action="store_true", help="one meter: the technician's REPL in front")
    ap.add_argument("--broker-files", help="a fleet: write Mosquitto passwd and acl here")
    ap.add_argument("--headend-password", help="with --broker-files: the head-end user's password")
    args = ap.parse_args(argv)
    mqtt = _mqtt_args(args)
    ca_pem = Path(args.ca).read_text() if args.ca else None
    office = load_office(args.office) if args.office else {}
    card_issuer = None
    if args.card_keys:
        from cardtool import load_issuer
        card_issuer = load_issuer(argparse.Namespace(test_keys=False, keys=args.card_keys))
    dirs = []
    if args.master:
        if args.fleet < 1 or args.region is None:
            ap.error("--master needs --fleet N and --region R")
        master = bytes.fromhex(Path(args.master).read_text().strip())
        fleet = {}
        for i in range(1, args.fleet + 1):
            mid = f"{args.prefix}{i:04d}"
            sec = fleet_secrets(master, mid)
            sec.update(office)
            if card_issuer is not None:
                sec["card"] = card_issuer.meter_secrets(mid)
            fleet[mid] = (args.region, sec["pw"])
            d = Path(args.state) / mid
            prepare(d, sec, args.region, mqtt, ca_pem)
            dirs.append(d)
        if args.broker_files:
            if not args.headend_password:
                ap.error("--broker-files needs --headend-password")
            pw, acl = broker_files(args.broker_files, fleet, args.headend_password)
            print(f"simmeter: wrote {pw} and {acl}", flush=True)
    else:
        d = Path(args.state)
        if args.secrets:
            sec = json.loads(Path(args.secrets).read_text())
            sec.update(office)
            if card_issuer is not None:
                sec["card"] = card_issuer.meter_secrets(sec["id"])
            prepare(d, sec, args.region, mqtt, ca_pem)
        elif not (d / "secrets.json").exists():
            ap.error(f"{d} has no secrets.json: give --secrets (or --master and --fleet)")
        elif mqtt:
            sec = json.loads((d / "secrets.json").read_text())
            prepare(d, sec, args.region, mqtt, ca_pem)
        dirs.append(d)
    if args.repl:
        if len(dirs) != 1:
            ap.error("--repl runs one meter")
        return subprocess.call(command(dirs[0], args.speed, args.flow, True), env=micropython_env(),
                               cwd=str(ROOT))
    procs = []
    for d in dirs:
        out = None if len(dirs) == 1 else open(d / "meter.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(command(d, args.speed, args.flow), env=micropython_env(),
                                      cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT))
    print(f"simmeter: {len(procs)} meter(s) running: " + ", ".join(str(d) for d in dirs), flush=True)

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)    # each meter saves on the way out
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return max((p.returncode or 0) for p in procs) if procs else 0


if __name__ == "__main__":
    sys.exit(main())
