"""Fixtures of the MQTT integration tests: a real Mosquitto with TLS,
per-user passwords and ACLs on a free loopback port, the reference head-end
connected to it, and meter firmware processes on the unix port.

    def test_x(mqtt_world):
        m = mqtt_world.start_meter("M1")      # provisioned, connects over TLS
        m.wait(lambda s: s["connected"])
        mqtt_world.he.topup("M1", 1000)
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT))                # the utility package

from broker import Broker, meter_acl, mosquitto_path
from headend import HeadEnd
from mpenv import MICROPYPATH, MICROPYTHON, mp_env  # noqa: F401 - the unix port; host tests import them from here
from office import OfficeKey
from pgserver import PgServer, pg_bin_dir

# region 1: M1..M6 (and B01..B40 for the bench); region 2: R2M1
METERS = {**{f"M{i}": 1 for i in range(1, 7)}, "R2M1": 2}


def sql(he, query, **params):
    """One SQL statement (text, :name parameters) on the head-end's store,
    committed: its rows as tuples, or the count of rows it changed."""
    from sqlalchemy import text
    with he.engine.begin() as c:
        r = c.execute(text(query), params)
        return [tuple(row) for row in r] if r.returns_rows else r.rowcount


def wait_for(pred, timeout=20.0, what="condition", interval=0.05):
    """Poll pred() until it returns something truthy; fail after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (OSError, ValueError, KeyError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class MeterProc:
    def __init__(self, world, meter_id, state_dir, speed):
        self.world = world
        self.id = meter_id
        self.dir = Path(state_dir)
        self.speed = speed
        self.proc = None

    def start(self):
        self.log = open(self.dir / "proc.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [MICROPYTHON, str(ROOT / "tests" / "mp_meter_proc.py"), str(self.dir), str(self.speed)],
            cwd=str(ROOT), env=mp_env(), stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def status(self):
        return json.loads((self.dir / "status.json").read_text())

    def set(self, **ctl):
        p = self.dir / "ctl.json"
        cur = json.loads(p.read_text()) if p.exists() else {}
        cur.update(ctl)
        p.with_suffix(".new").write_text(json.dumps(cur))
        os.replace(p.with_suffix(".new"), p)

    def wait(self, pred, timeout=20.0, what=None):
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"meter {self.id} exited: {self.output()}")
        return wait_for(lambda: pred(self.status()), timeout, what or f"meter {self.id}")

    def output(self):
        return (self.dir / "proc.log").read_text(errors="replace")[-3000:]

    def stop(self, timeout=10):
        """Clean stop: the process saves and disconnects."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.set(stop=1)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None
        (self.dir / "ctl.json").unlink(missing_ok=True)

    def kill(self):
        """Power cut: no save, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


class World:
    def __init__(self, tmp, meters=METERS, db="he.sqlite"):
        self.tmp = Path(tmp)
        self.db = db                          # the head-end's store: a file in tmp, or a URL
        self.master = secrets.token_bytes(32)
        self.office = OfficeKey.generate()    # the office's signing key: host only
        self.he_password = secrets.token_hex(8)
        self.meters = dict(meters)
        from comms import sign
        users = {m: sign.mqtt_password(self.master, m) for m in self.meters}
        users["headend"] = self.he_password
        self.broker = Broker(tls=True, users=users, acl=meter_acl(self.meters, ["headend"]))
        self.procs = []
        self.he = None

    def start(self):
        self.broker.start()
        self.he = self.headend().connect()
        for m, r in self.meters.items():
            self.he.provision(m, r)
        return self

    def headend(self, db=None, client_id="headend-main"):
        db = db or self.db
        return HeadEnd(db if "://" in str(db) else self.tmp / db, self.master, self.broker.host, self.broker.admin_port, "headend",
                       self.he_password, self.broker.ca_file, client_id, persistent=True,
                       office=self.office)

    def start_meter(self, meter_id, speed=60, report_s=60, keepalive=10, flow=0, credit=None,
                    state_dir=None, ca_pem=None, **cfg):
        d = Path(state_dir or self.tmp / meter_id)
        fresh = not (d / "secrets.json").exists()
        if fresh:
            d.mkdir(parents=True, exist_ok=True)
            self.he.provision(meter_id, self.meters[meter_id], d,
                              {"host": self.broker.host, "port": self.broker.port, "tls": True,
                               "keepalive": keepalive, "backoff_max_s": 2, "timeout_ms": 3000},
                              ca_pem or self.broker.ca_pem)
            c = json.loads((d / "config.json").read_text())
            c.update({"report_s": report_s, "reopen": "auto", "friendly_hours": [0, 0],
                      "friendly_days": []}, **cfg)
            (d / "config.json").write_text(json.dumps(c))
        p = MeterProc(self, meter_id, d, speed)
        if flow:
            p.set(flow=flow)
        p.start()
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            p.kill()
        if self.he is not None:
            self.he.close()
        self.broker.stop()
        self.broker._dir.cleanup()


def _need_mosquitto():
    # a failure, not a skip: `make test` installs it (tools/bootstrap.sh)
    if mosquitto_path() is None:
        pytest.fail("Mosquitto is not installed: run `make test` (installs it as root) "
                    "or apt-get install mosquitto", pytrace=False)


@pytest.fixture(scope="module")
def mqtt_world(tmp_path_factory):
    _need_mosquitto()
    w = World(tmp_path_factory.mktemp("mqtt")).start()
    yield w
    w.close()


@pytest.fixture()
def fresh_world(tmp_path):
    """A broker of one's own: for tests that stop and restart it."""
    _need_mosquitto()
    w = World(tmp_path).start()
    yield w
    w.close()


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server per test session (per xdist worker)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        # a failure, not a skip: `make test` installs it (tools/bootstrap.sh)
        pytest.fail("PostgreSQL server binaries are not installed: run `make test` (installs "
                    "them as root) or apt-get install postgresql", pytrace=False)
    server = PgServer(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server):
    """A SQLAlchemy URL of a fresh, empty PostgreSQL database."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


__all__ = ["shutil", "wait_for"]
