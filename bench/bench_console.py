# The operators' console (utility/web): how long its pages take to render
# over a fleet's store, on SQLite: METERS meters, DAYS days of hourly
# telemetry each, a daily history record per meter-day, ledger entries,
# some alarm events. Each page is fetched REPEAT times through Flask's test
# client (no network); the figure is the median.
#
#   .venv/bin/python bench/bench_console.py [METERS] [DAYS]
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "host"))

from consolekit import Browser, make_app, users

from utility import schema as st

REPEAT = 5
T0 = 1_767_225_600                  # 2026-01-01 00:00 UTC


def fill(app, meters, days):
    rnd = random.Random(1)
    now = T0 + days * 86400
    with app.extensions["store"].begin() as c:
        c.execute(st.meters.insert(), [
            {"id": f"B{i:05d}", "region": i % 20, "building": f"b{i // 40}", "online": 1,
             "last_seen": now - rnd.randrange(7200), "t": now, "ml": 0, "bal": rnd.randrange(10**7),
             "flags": 1, "tv": 1} for i in range(meters)])
        for i in range(meters):
            m, ml, seq = f"B{i:05d}", 0, 0
            tel, hist, led = [], [], []
            for d in range(days):
                day0 = ml
                for h in range(24):
                    seq += 1
                    ml += rnd.randrange(0, 20_000)
                    tel.append({"meter": m, "seq": seq, "kind": 1, "t": T0 + d * 86400 + h * 3600,
                                "ml": ml, "bal": 0})
                hist.append({"meter": m, "kind": "d", "seq": d + 1, "t": T0 + (d + 1) * 86400, "al": 0,
                             "span": 1, "ml": ml, "dml": ml - day0, "tc": 0, "chg": ml - day0, "bal": 0})
                led.append({"meter": m, "source": "charge", "ref": f"d/{d + 1}", "amount": ml - day0,
                            "t": T0 + (d + 1) * 86400, "recorded": now})
            c.execute(st.telemetry.insert(), tel)
            c.execute(st.history.insert(), hist)
            c.execute(st.ledger.insert(), led)
            if i % 50 == 0:
                c.execute(st.events.insert(), [{"meter": m, "seq": seq + 1, "evs": 1, "t": now,
                                                "code": 13, "arg": 0, "received": now}])
    return now


def main():
    meters = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    with tempfile.TemporaryDirectory() as d:
        now = T0 + days * 86400
        app = make_app(f"sqlite:///{d}/bench.sqlite", CLOCK=lambda: now)
        users(app, bench="viewer")
        t = time.perf_counter()
        fill(app, meters, days)
        print(f"store: {meters} meters x {days} days hourly ({meters * days * 24} telemetry rows), "
              f"filled in {time.perf_counter() - t:.1f} s")
        b = Browser(app, "bench", "benchbench")
        for page in ("/meters", "/meters/B00007", "/regions", "/revenue", "/alarms"):
            times = []
            for _ in range(REPEAT):
                t = time.perf_counter()
                r = b.get(page)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, page
            print(f"{page:<16} {statistics.median(times) * 1000:8.1f} ms  ({len(r.data) // 1024} KiB)")


if __name__ == "__main__":
    main()
