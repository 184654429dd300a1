"""MQTT figures: bytes per meter per day, region tariff fan-out, outbox drain.

Real Mosquitto (TLS, passwords, ACL) and meter firmware processes on the
unix port, driven by the reference head-end.

    .venv/bin/python bench/bench_mqtt.py [--meters 20,50,100] [--drain 1000]
"""

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "firmware"))

from broker import Broker, meter_acl, mosquitto_path
from comms import sign
from headend import HeadEnd
from office import OfficeKey

sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env

ENV = mp_env()


class Bench:
    def __init__(self, tmp, ids):
        self.tmp = Path(tmp)
        self.master = secrets.token_bytes(32)
        self.meters = {m: 1 for m in ids}
        users = {m: sign.mqtt_password(self.master, m) for m in self.meters}
        self.hepw = secrets.token_hex(8)
        users["headend"] = self.hepw
        self.broker = Broker(tls=True, users=users, acl=meter_acl(self.meters)).start()
        self.he = HeadEnd(self.tmp / "he.sqlite", self.master, self.broker.host, self.broker.admin_port,
                          "headend", self.hepw, self.broker.ca_file, "bench-headend", True,
                          office=OfficeKey.generate()).connect()
        self.procs = []

    def meter(self, mid, speed=1, **cfg):
        d = self.tmp / mid
        self.he.provision(mid, 1, d, {"host": self.broker.host, "port": self.broker.port, "tls": True,
                                      "keepalive": 60, "backoff_max_s": 5}, self.broker.ca_pem)
        c = json.loads((d / "config.json").read_text())
        c.update(cfg)
        (d / "config.json").write_text(json.dumps(c))
        return d

    def start(self, d, speed=1, status_ms=1000):
        p = subprocess.Popen([MICROPYTHON, str(ROOT / "tests" / "mp_meter_proc.py"), str(d), str(speed),
                              str(status_ms)],
                             cwd=str(ROOT), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def status(self, d):
        try:
            return json.loads((d / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.02)
        raise SystemExit(f"bench_mqtt: timed out waiting for {what}")

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []

    def close(self):
        self.stop_all()
        self.he.close()
        self.broker.stop()


def bytes_per_day(b):
    # Reports every 300 s of meter time at speed 300: one per real second.
    d = b.meter("B000", report_s=300)
    b.start(d, speed=300, status_ms=100)
    b.wait(lambda: b.status(d).get("connected") and b.status(d).get("outbox") == 0, 20, "connect")
    time.sleep(1.5)
    s0 = b.status(d)
    time.sleep(10)
    s1 = b.status(d)
    b.stop_all()
    reports = (s1["t"] - s0["t"]) / 300
    tx = (s1["tx"] - s0["tx"]) / reports    # MQTT bytes out per report (PUBLISH)
    rx = (s1["rx"] - s0["rx"]) / reports    # MQTT bytes in per report (PUBACK)
    per_day = 24 * (tx + rx)

    def ping(ka):
        return 86400 // (ka // 2) * 4   # PINGREQ + PINGRESP, 2 bytes each

    print("bytes per meter per day (hourly telemetry, MQTT level, TLS and TCP/IP not counted):")
    print(f"  one report: {tx:.1f} bytes out (PUBLISH, QoS 1), {rx:.1f} bytes in (PUBACK)")
    print(f"  telemetry:  {per_day:.0f} bytes/day")
    for ka in (60, 300, 1200):
        print(f"  + keepalive {ka:4d} s: {ping(ka):5d} bytes/day of pings -> "
              f"{per_day + ping(ka):5.0f} bytes/day in all")
    # one TLS record per MQTT packet (the transport gathers umqtt's writes):
    # 5 header + 8 explicit nonce + 16 tag with AES-GCM
    tls = 29 * (2 * 24 + 2 * (86400 // 600))
    print(f"  TLS 1.2 AES-GCM, 29 bytes per record, keepalive 1200 s: "
          f"{per_day + ping(1200) + tls:.0f} bytes/day in all")


BATCH = 25   # meters started at once


def fan_out(b, n):
    dirs = [b.meter(f"F{n}-{i}", report_s=86400) for i in range(n)]   # new meters each run
    # Started in batches, each connected before the next starts. All at
    # once, every meter process does its TLS handshake at the same time as
    # the others on this host's cores: past about 150 meters on 2 cores no
    # handshake ends within the meter's deadline, every meter retries within
    # its backoff (5 s here), and none ever connects. (A fleet does the same
    # after a broker restart; there the jittered backoff up to backoff_max_s,
    # 300 s by default, spreads the reconnections.)
    t0 = time.monotonic()
    for i in range(0, n, BATCH):
        batch = dirs[i:i + BATCH]
        for d in batch:
            b.start(d, speed=1)
        deadline = time.monotonic() + 60
        while not all(b.status(d).get("connected") for d in batch):
            if time.monotonic() > deadline:
                up = sum(1 for d in dirs if b.status(d).get("connected"))
                b.stop_all()
                print(f"  {n:3d} meters: only {up} connected after {time.monotonic() - t0:.0f} s "
                      f"(batches of {BATCH}): this machine is saturated")
                return False
            time.sleep(0.02)
    t_up = time.monotonic() - t0
    got = {}
    done = threading.Event()
    # the next version: a meter takes a region tariff whose version rises by
    # 1..TARIFF_STEP within its epoch (firmware/meter.py, tariff_verdict), so
    # a version from the clock is refused (RANGE, no ack); the meters are
    # new, all at the same version
    versions = {b.status(d).get("tv") for d in dirs}
    if len(versions) != 1:
        raise SystemExit(f"bench_mqtt: new meters at tariff versions {sorted(versions)}")
    version = versions.pop() + 1

    def on_ack(meter, a):
        if a["n"] == 0 and a["val"] == version and meter not in got:
            got[meter] = time.monotonic()
            if len(got) == n:
                done.set()

    b.he.on_ack.append(on_ack)
    t_pub = time.monotonic()
    b.he.publish_tariff({"v": version, "at": 0, "b": [[0, 420_000]], "sc": 0}, region=1)
    complete = done.wait(60)
    lat = sorted(t - t_pub for t in got.values())
    b.he.on_ack.remove(on_ack)
    b.stop_all()
    if not complete:
        print(f"  {n:3d} meters: all connected (TLS) in {t_up:.1f} s; only {len(got)} had the tariff "
              f"after 60 s: this machine is saturated")
        return False
    print(f"  {n:3d} meters: all connected (TLS, batches of {BATCH}) in {t_up:.1f} s; tariff on every meter in "
          f"{lat[-1] * 1000:.0f} ms (median {lat[len(lat) // 2] * 1000:.0f} ms, first {lat[0] * 1000:.0f} ms)")


def drain(b, n):
    d = b.meter("B001", report_s=86400)
    # an outage's worth of records, written by the firmware's own outbox code
    fill = (f"from comms.outbox import Outbox\nfrom comms import codec\nob = Outbox({str(d)!r})\n"
            f"for i in range({n}):\n"
            "    ob.append(codec.tele(1767225600 + 3600 * i, i, 0, 0, 0, 1, i, -60))\n")
    subprocess.run([MICROPYTHON, "-c", fill], cwd=str(ROOT), env=ENV, check=True)
    seen = set()
    done = threading.Event()

    def on_record(meter, r):
        if meter == "B001":
            seen.add(r["seq"])
            if len(seen) >= n:
                done.set()

    b.he.on_record.append(on_record)
    t0 = time.monotonic()
    b.start(d, speed=1, status_ms=50)
    b.wait(lambda: b.status(d).get("connected"), 30, "connect")
    t_conn = time.monotonic()
    if not done.wait(120):
        raise SystemExit(f"bench_mqtt: drained only {len(seen)} of {n} records")
    t_end = time.monotonic()
    b.stop_all()
    dt = t_end - t_conn
    print(f"outbox drain after an outage: {n} records (40 bytes each) in {dt:.2f} s after connect "
          f"-> {n / dt:.0f} records/s ({t_end - t0:.1f} s from power-up)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", default="20,50,100,200", help="fan-out sizes, tried in turn")
    ap.add_argument("--drain", type=int, default=1000, help="records (the outbox holds 1024)")
    args = ap.parse_args()
    if mosquitto_path() is None:
        raise SystemExit("bench_mqtt: needs Mosquitto (apt-get install mosquitto)")
    sizes = [int(x) for x in args.meters.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        ids = ["B000", "B001"] + [f"F{n}-{i}" for n in sizes for i in range(n)]
        b = Bench(tmp, ids)
        try:
            bytes_per_day(b)
            print("region tariff broadcast, publish -> applied on every meter (ack received):")
            for n in sizes:
                if fan_out(b, n) is False:
                    break
            drain(b, args.drain)
        finally:
            b.close()


if __name__ == "__main__":
    main()
