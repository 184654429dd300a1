"""Ingestion throughput: how many meters one worker (utility/ingest.py) serves.

Telemetry of many simulated meters (tools/uplinksim.py: outbox batches
sealed with each meter's uplink key, as the firmware sends them) is queued
on a real Mosquitto (TLS, ACL) while the workers are down, in their
persistent sessions; then 1, and 2, workers of one shared-subscription
group are started and the time to store all of it is measured, on SQLite
and on PostgreSQL (Debian's server, fsync on: durable commits, as in
production). Two shapes of traffic:

- hourly: a mains meter's report, one telemetry record per message
  (report_s 3600, docs/PROTOCOL.md §3.3), four hours of it;
- daily: a day's 24 hourly records in one message (batched, per_msg 24).

Each meter's messages are interleaved with the others' (every meter's
first, then every meter's second ...), as a fleet reports.

Printed per run: records/s and messages/s of the group and per worker, and
the meters one worker serves at that report rate (messages/s per worker x
3600 for hourly, x 86400 for daily), and the ratios 2 workers : 1 worker
and PostgreSQL : SQLite measured in the same run (the machine is shared).

--baseline DIR compares code: DIR is another checkout of this repository
(git worktree add DIR COMMIT) with the same migrations; each measurement
is made with DIR's workers (utility/ingest.py and the head-end it imports)
and then with this tree's, --rounds times in turn, on the same data, and
the ratio this tree : baseline is printed for each. --batch N is passed
to this tree's workers (utility/ingest.py --batch: messages stored per
transaction); the replayed backlog fills every batch, --batch 1 measures
them storing one message at a time, as under a steady trickle.

    .venv/bin/python bench/bench_ingest.py [--meters 2000] [--db sqlite,postgresql]
                                           [--workers 1,2] [--shapes hourly,daily]
                                           [--baseline DIR [--rounds 2]] [--batch N]
"""

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tests" / "host"))

import paho.mqtt.client as mqtt
from broker import Broker, meter_acl, mosquitto_path
from headend import HeadEnd
from office import OfficeKey
from uplinksim import outbox_messages

PYTHON = str(ROOT / ".venv" / "bin" / "python")
# shape: (records per message, messages per meter replayed, report period s)
SHAPES = {"hourly": (1, 4, 3600), "daily": (24, 1, 86400)}


def publish_all(broker, pw, msgs):
    """Replay the messages through the head-end's listener (the admin user
    may publish on m/#): one client, 200 QoS 1 publishes in flight."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-replay")
    c.username_pw_set("headend", pw)
    c.tls_set(ca_certs=broker.ca_file)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.admin_port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p, _ in msgs]
    for i in infos:
        i.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


class Run:
    def __init__(self, tmp, db, meters, master):
        self.tmp, self.db, self.meters, self.master = Path(tmp), db, meters, master
        self.master_file = self.tmp / "master.key"
        self.master_file.write_text(master.hex())
        self.he_pw, self.ingest_pw = secrets.token_hex(8), secrets.token_hex(8)
        self.broker = Broker(tls=True, users={"headend": self.he_pw, "ingest": self.ingest_pw},
                             admins=("headend", "ingest"),
                             acl=meter_acl({}, ["headend"], readers=["ingest"])).start()
        he = HeadEnd(db, master, office=OfficeKey.generate())
        for m in meters:
            he.provision(m, 1)
        he.engine.dispose() if hasattr(he, "engine") else he.db.close()

    def worker(self, slot, code=ROOT, batch=None):
        log = self.tmp / f"w{slot}.log"
        log.write_bytes(b"")
        p = subprocess.Popen(
            [PYTHON, "-m", "utility.ingest", "--db", str(self.db), "--master", str(self.master_file),
             "--broker", f"{self.broker.host}:{self.broker.admin_port}", "--ca", self.broker.ca_file,
             "--user", "ingest", "--password", self.ingest_pw, "--workers-group", "bench",
             "--slot", str(slot), *(["--batch", str(batch)] if batch and code == ROOT else [])],
            cwd=str(code), stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + 30
        while b"subscribed" not in log.read_bytes():
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench_ingest: worker {slot} did not start: {log.read_text()}")
            time.sleep(0.02)
        return p, log

    def stop(self, procs):
        out = []
        for p, log in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
            m = re.search(r"(\d+) messages, (\d+) records, \d+ bad, ([\d.]+) s storing",
                          log.read_text())
            out.append(tuple(float(x) for x in m.groups()) if m else (0, 0, 0))
        return out

    def stored(self):
        he = HeadEnd(self.db, self.master)
        try:
            if hasattr(he, "engine"):
                from sqlalchemy import text
                with he.engine.connect() as c:
                    return c.execute(text("SELECT (SELECT COUNT(*) FROM telemetry) + "
                                          "(SELECT COUNT(*) FROM events)")).scalar()
            return he.db.execute("SELECT (SELECT COUNT(*) FROM telemetry) + "
                                 "(SELECT COUNT(*) FROM events)").fetchone()[0]
        finally:
            he.engine.dispose() if hasattr(he, "engine") else he.db.close()

    def measure(self, workers, msgs, records, code=ROOT, batch=None):
        # sessions first (subscribed), then down: the replay waits in them
        self.stop([self.worker(k, code, batch) for k in range(1, workers + 1)])
        publish_all(self.broker, self.he_pw, msgs)
        t0 = time.monotonic()
        procs = [self.worker(k, code, batch) for k in range(1, workers + 1)]
        while self.stored() < records:
            if any(p.poll() is not None for p, _ in procs):
                raise SystemExit("bench_ingest: a worker exited: " + procs[0][1].read_text())
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"bench_ingest: only {self.stored()} of {records} stored in 900 s")
            time.sleep(0.1)
        wall = time.monotonic() - t0
        return wall, self.stop(procs)

    def close(self):
        self.broker.stop()


def database(kind, tmp, pg):
    if kind == "sqlite":
        return tmp / "he.sqlite"
    return pg.new_database()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--shapes", default="hourly,daily")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout: measure its workers too")
    ap.add_argument("--rounds", type=int, default=1, help="with --baseline: measurements of each")
    ap.add_argument("--batch", type=int, help="this tree's workers' --batch (1: one message a transaction)")
    args = ap.parse_args(argv)
    codes = [("this", ROOT)]
    if args.baseline:
        base = Path(args.baseline).resolve()
        if not (base / "utility" / "ingest.py").exists():
            ap.error(f"--baseline {base}: no utility/ingest.py there")
        codes = [("baseline", base), ("this", ROOT)] * args.rounds
    if mosquitto_path() is None:
        raise SystemExit("bench_ingest: Mosquitto is not installed (make test installs it)")
    kinds = args.db.split(",")
    counts = [int(x) for x in args.workers.split(",")]
    shapes = args.shapes.split(",")
    master = secrets.token_bytes(32)
    meters = [f"B{i:05d}" for i in range(1, args.meters + 1)]
    pg = None
    if "postgresql" in kinds:
        from pgserver import PgServer, pg_bin_dir
        if pg_bin_dir() is None:
            raise SystemExit("bench_ingest: PostgreSQL is not installed (make test installs it)")
        pg = PgServer(pg_bin_dir(), durable=True).start()
    results = {}
    print(f"bench_ingest: {args.meters} meters, Mosquitto TLS, workers {args.workers}, "
          f"{os.cpu_count()} cores")
    try:
        for shape in shapes:
            per_msg, count, period = SHAPES[shape]
            # interleaved as the meters report: every meter's first message, then the second ...
            each = [outbox_messages(master, mid, per_msg * count, per_msg, event_every=0)
                    for mid in meters]
            msgs = [m[k] for k in range(count) for m in each]
            records = sum(n for _, _, n in msgs)
            for kind in kinds:
                for n in counts:
                    for name, code in codes:
                        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
                            run = Run(tmp, database(kind, Path(tmp), pg), meters, master)
                            try:
                                wall, per = run.measure(n, msgs, records, code, args.batch)
                            finally:
                                run.close()
                        rate = records / wall
                        mrate = len(msgs) / wall
                        serves = mrate / n * period
                        results.setdefault((shape, kind, n, name), []).append(rate)
                        if name == "this":
                            results[(shape, kind, n)] = rate
                        own = ", ".join(f"{r / s:.0f}" if s else "-" for _, r, s in per)
                        label = f" [{name}]" if args.baseline else ""
                        print(f"  {shape:6} {kind:10} {n} worker(s){label}: {len(msgs)} messages, "
                              f"{records} records in {wall:.1f} s: {rate:.0f} records/s, {mrate:.0f} "
                              f"messages/s ({rate / n:.0f} records/s per worker; each worker's own "
                              f"while storing: {own}); one worker serves {serves:,.0f} meters "
                              f"{'reporting hourly' if period == 3600 else 'sending a daily batch of 24'}",
                              flush=True)
                    if args.baseline:
                        new, old = results[(shape, kind, n, "this")], results[(shape, kind, n, "baseline")]
                        print(f"  {shape} {kind} {n} worker(s): this / baseline = "
                              + ", ".join(f"{a / b:.2f}" for a, b in zip(new, old, strict=True))
                              + " (each round)", flush=True)
            for kind in kinds:
                if (shape, kind, 1) in results and (shape, kind, 2) in results:
                    print(f"  {shape} {kind}: 2 workers / 1 worker = "
                          f"{results[(shape, kind, 2)] / results[(shape, kind, 1)]:.2f}")
            if len(kinds) == 2:
                for n in counts:
                    a, b = results.get((shape, "postgresql", n)), results.get((shape, "sqlite", n))
                    if a and b:
                        print(f"  {shape} {n} worker(s): PostgreSQL / SQLite = {a / b:.2f}")
    finally:
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
