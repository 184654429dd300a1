"""Reference head-end: the utility's side of docs/PROTOCOL.md.

CPython with paho-mqtt and SQLite. It signs exactly as the meter verifies,
because it imports the firmware's own codec and HMAC (firmware/comms/).

    headend.py [--db FILE] [--master FILE] [--broker HOST:PORT] [--ca FILE]
               [--user NAME] [--password PW] COMMAND ...

    init                                  new master key and office signing key (files, mode
                                          0600), the meters' public office.json, database
    provision METER --region R [--state DIR] [--tls] [--card-keys ISSUER.json]
                                          derive the meter's keys (card keys too, given the
                                          vending station's issuer file); write
                                          DIR/secrets.json and DIR/config.json for the meter
    broker-files DIR [--headend-password PW] [--ingest-password PW]
                                          Mosquitto password and ACL files for all meters
                                          (and the ingestion workers' user `ingest`)
    tariff (--region R | --meter ID) --version V --block UPTO_L:PRICE ... [--at EPOCH]
           [--standing UNITS_PER_DAY] [--epoch E]
                                          publish a tariff: a region's is office-signed and
                                          retained; a higher --epoch is the signed reset
    fleet (--region R | --meters ID,ID) valvetest|retire|cell [--rev R] [--days D]
                                          an office-signed fleet command (PROTOCOL.md §6)
    topup METER AMOUNT [--account A] [--seq S]      online top-up, waits for the ack
    retry METER                           re-send unacknowledged top-ups (same keys)
    valve METER open|close [--override]
    config METER KEY JSON_VALUE
    timesync METER [--time EPOCH]
    get METER state|log|cfg
    listen [--seconds N]                  ingest telemetry, events, status into SQLite
    meters                                balance, volume, last seen and alarms per meter
    show METER [--limit N]                recent telemetry and events of one meter

Money is in money units (1/1000 of the minor currency unit); prices are money
units per m^3. Exit status: 0 done, 1 the meter refused (result code shown),
2 usage or connection error, 3 no acknowledgement in time.

Python use (tests, make sim, the bench):  he = HeadEnd(db, master, host, port, ...);
he.connect(); he.provision(...); he.publish_tariff(...); he.topup(...); he.meters().
"""

import argparse
import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tools"))
import codes
from comms import (
    codec,
    sign,
)
from office import OfficeKey, office_secrets
from storage.state import mark_provisioned

# events that count as alarms in `meters`
ALARMS = {c: codes.event_name(c) for c in (
    codes.EV_LOW_CREDIT_2, codes.EV_CREDIT_EXHAUSTED, codes.EV_VALVE_FAULT, codes.EV_TAMPER,
    codes.EV_LEAK, codes.EV_BURST, codes.EV_REVERSE_FLOW, codes.EV_STATE_CORRUPT,
    codes.EV_LOW_BATTERY, codes.EV_SENSOR_FAULT, codes.EV_OUTBOX_OVERFLOW,
    codes.EV_FLOW_WHILE_CLOSED, codes.EV_COMMAND_REJECTED)}

# The most an outbox holds (firmware/comms/outbox.py: 16 segments of 64):
# a genuine meter's next record is never further than this above the last
# one stored, so a bigger jump is refused (docs/PROTOCOL.md §3.1).
OUTBOX_SPAN = 16 * 64

# head-end alarms (table alarms), shown in `meters` with the event alarms:
#   forged_uplink  a publish on m/<id>/t, e or a whose tag is not that meter's
#   seq_jump       a record sequence more than OUTBOX_SPAN above the last stored
#   seq_conflict   a sequence number already stored with other content
#   rollback       a register went backwards: the event sequence, or the
#                  volume by more than a power cut can lose
#   ack_mismatch   an ack whose command hash is not that of the command sent
# A power cut may lose up to save_l litres not yet saved (docs/METERING.md;
# save_l is at most 1000): a volume that far below the highest is not a
# rollback. A restored outbox is caught by its sequence numbers instead.
POWER_CUT_ML = 1000 * 1000

UPLINK_ALARMS = ("forged_uplink", "seq_jump", "seq_conflict", "rollback", "ack_mismatch")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    meter TEXT, kind TEXT, detail TEXT, received REAL);
CREATE TABLE IF NOT EXISTS marks (
    meter TEXT, reg TEXT, hi INTEGER, PRIMARY KEY (meter, reg));
CREATE TABLE IF NOT EXISTS meters (
    id TEXT PRIMARY KEY, region INTEGER NOT NULL, ctr INTEGER NOT NULL DEFAULT 0,
    online INTEGER, last_seen REAL, last_seq INTEGER DEFAULT 0, t INTEGER, ml INTEGER,
    bal INTEGER, flow INTEGER, flags INTEGER, tv INTEGER, rssi INTEGER);
CREATE TABLE IF NOT EXISTS telemetry (
    meter TEXT, seq INTEGER, kind INTEGER, t INTEGER, ml INTEGER, bal INTEGER, flow INTEGER,
    flags INTEGER, tv INTEGER, evs INTEGER, rssi INTEGER, last_seq INTEGER, n INTEGER,
    t0 INTEGER, ml0 INTEGER, dropped INTEGER, received REAL, PRIMARY KEY (meter, seq));
CREATE TABLE IF NOT EXISTS events (
    meter TEXT, seq INTEGER, evs INTEGER, t INTEGER, code INTEGER, arg INTEGER,
    received REAL, PRIMARY KEY (meter, seq));
CREATE TABLE IF NOT EXISTS acks (
    meter TEXT, n INTEGER, code INTEGER, val INTEGER, detail TEXT, received REAL);
CREATE TABLE IF NOT EXISTS topups (
    meter TEXT, account INTEGER, seq INTEGER, amount INTEGER, status TEXT, code INTEGER,
    created REAL, PRIMARY KEY (meter, account, seq));
CREATE TABLE IF NOT EXISTS commands (
    meter TEXT, n INTEGER, op TEXT, body TEXT, sent REAL, code INTEGER, acked REAL,
    PRIMARY KEY (meter, n));
CREATE TABLE IF NOT EXISTS tariffs (
    scope TEXT, version INTEGER, body TEXT, published REAL);
CREATE TABLE IF NOT EXISTS fleet (
    n INTEGER PRIMARY KEY, region INTEGER, body TEXT, published REAL);
CREATE TABLE IF NOT EXISTS arrears (
    meter TEXT, seq INTEGER, amount INTEGER, code INTEGER, debt INTEGER, created REAL,
    PRIMARY KEY (meter, seq));
CREATE TABLE IF NOT EXISTS battery (
    meter TEXT PRIMARY KEY, t INTEGER, mv INTEGER, pct INTEGER, days INTEGER, received REAL);
CREATE TABLE IF NOT EXISTS history (
    meter TEXT, kind TEXT, seq INTEGER, t INTEGER, al INTEGER, span INTEGER, ml INTEGER,
    dml INTEGER, tc INTEGER, chg INTEGER, bal INTEGER, received REAL,
    PRIMARY KEY (meter, kind, seq));
"""


# ops that can answer `old` themselves, past the counter check (docs/PROTOCOL.md §4.4)
OWN_OLD = ("topup", "debt", "void", "floor", "tariff")


class HeadEndError(Exception):
    """A clear, user-facing error (exit status 2)."""


class NoAck(HeadEndError):
    pass


def new_master(path):
    p = Path(path)
    if p.exists():
        raise HeadEndError(f"{p} exists; refusing to replace a master key")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return p


def read_master(path):
    try:
        return bytes.fromhex(Path(path).read_text().strip())
    except FileNotFoundError:
        raise HeadEndError(f"no master key at {path} (run `headend.py init`)") from None
    except ValueError:
        raise HeadEndError(f"master key file {path} is not hex") from None


def parse_blocks(specs):
    """["1000:350000", "0:700000"] -> [[1000, 350000], [0, 700000]]"""
    out = []
    for s in specs:
        try:
            upto, price = s.split(":")
            out.append([int(upto), int(price)])
        except ValueError:
            raise HeadEndError(f"bad block {s!r}: want UPTO_LITRES:PRICE (0 = unbounded)") from None
    return out


class HeadEnd:
    def __init__(self, db, master, host="127.0.0.1", port=1883, user=None, password=None,
                 ca_file=None, client_id=None, persistent=False, office=None, ingest=True):
        self.db_path = str(db)
        self.master = master if isinstance(master, bytes) else read_master(master)
        # the office's P-256 signing key (tools/office.py): region tariffs and
        # fleet commands; meters get only its public half at provisioning
        self.office = office if office is None or isinstance(office, OfficeKey) \
            else OfficeKey.load(office)
        self.host, self.port = host, port
        self.user, self.password, self.ca_file = user, password, ca_file
        # persistent: a fixed client id and a broker-side session, so that
        # telemetry published while the head-end is away is queued for it
        self.persistent = persistent and client_id is not None
        # ingest=False: ingestion workers (utility/ingest.py) store the
        # uplink; this head-end takes only OTA block requests from the broker
        # and finds the acks it waits for in the database
        self.ingests = ingest
        self.client_id = client_id or f"headend-{secrets.token_hex(3)}"
        self.db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30)
        self.db.executescript(SCHEMA)
        self.db.commit()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._acks = {}          # (meter, n) -> ack dict
        self._sent = {}          # (meter, n) -> codec.command_hash of the command published
        self.on_ack = []         # fn(meter, ack) for every ack (the bench uses it)
        self.on_record = []      # fn(meter, record dict)
        self.ota = None          # rollout.Rollout being served (tools/rollout.py)
        self.client = None
        self._connected = threading.Event()
        self._rc = None

    # ---------------- keys ----------------
    def meter_key(self, meter_id):
        return sign.meter_key(self.master, meter_id)

    def uplink_key(self, meter_id):
        return sign.uplink_key(self.meter_key(meter_id))

    def _need_office(self):
        if self.office is None:
            raise HeadEndError("no office signing key (run `headend.py init`, or pass office=)")
        return self.office

    def sign_doc(self, purpose, doc):
        """An office-signed document (PROTOCOL.md §6): b"<json>|<128 hex>"."""
        body = json.dumps(doc, separators=(",", ":")).encode()
        return body + b"|" + self._need_office().sign(purpose, body).hex().encode()

    def mqtt_password(self, meter_id):
        return sign.mqtt_password(self.master, meter_id)

    def provision(self, meter_id, region, state_dir=None, mqtt=None, ca_pem=None, replaces=None,
                  card=None):
        """Register a meter and derive its secrets. With state_dir, write the
        meter's secrets.json (keys, broker credentials, CA) and merge mqtt
        (host/port/tls/keepalive) and the id and region into its config.json.
        replaces=(account, install_seq): a replacement for a meter with the
        same id; its config carries the old binding, so it boots as a state
        loss and takes no credit before `floor` (docs/CARD.md §5.3).
        card: the meter's card section ({"rev", "rec"}, IssuerKeys.meter_secrets)
        when the head-end holds the vending station's issuer key file."""
        # the meter's own rule for its id (docs/PROTOCOL.md §2, config.py)
        if not 1 <= len(meter_id) <= 16 or not all(c.isascii() and (c.isalnum() or c in "-_")
                                                   for c in meter_id):
            raise HeadEndError(f"bad meter id {meter_id!r}: 1..16 letters, digits, - or _")
        if not 0 <= int(region) < 1 << 16:
            raise HeadEndError("region must be 0..65535")
        with self._lock:
            self.db.execute("INSERT INTO meters (id, region) VALUES (?, ?) ON CONFLICT(id) DO "
                            "UPDATE SET region = excluded.region", (meter_id, int(region)))
            if replaces is not None:
                # the new meter's outbox starts again at 1: the old meter's
                # records move to "<id>@<unix time>", so they are neither
                # conflicts nor a rollback of the new one
                old = f"{meter_id}@{int(time.time())}"
                for table in ("telemetry", "events"):
                    self.db.execute(f"UPDATE {table} SET meter = ? WHERE meter = ?",
                                    (old, meter_id))
                self.db.execute("UPDATE meters SET last_seq = 0 WHERE id = ?", (meter_id,))
                self.db.execute("DELETE FROM marks WHERE meter = ?", (meter_id,))
            self.db.commit()
        sec = {"id": meter_id, "mk": self.meter_key(meter_id).hex(), "user": meter_id,
               "pw": self.mqtt_password(meter_id), "ca": ca_pem}
        sec.update(office_secrets([self._need_office()]))
        if card is not None:
            sec["card"] = card
        if state_dir is not None:
            d = Path(state_dir)
            d.mkdir(parents=True, exist_ok=True)
            p = d / "secrets.json"
            fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(sec, f)
            cp = d / "config.json"
            cfg = json.loads(cp.read_text()) if cp.exists() else {}
            cfg["meter_id"] = meter_id
            cfg["region"] = int(region)
            if mqtt is not None:
                cfg["mqtt"] = mqtt
            if replaces is not None:
                cfg["account"], cfg["install_seq"] = (int(x) for x in replaces)
            cp.write_text(json.dumps(cfg))
            if replaces is None:
                # the first state copy: without it a meter with these
                # secrets and no state boots as a loss (docs/METERING.md)
                mark_provisioned(str(d), int(time.time()))
        return sec

    def broker_files(self, out_dir, headend_password, ingest_password=None):
        """Mosquitto password_file and acl_file for every provisioned meter;
        with ingest_password also user `ingest`, which reads the uplink
        (utility/ingest.py: run the broker with --admin headend --admin ingest)."""
        sys.path.insert(0, str(ROOT / "tools"))
        from broker import meter_acl, password_line
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        meters = dict(self.db.execute("SELECT id, region FROM meters ORDER BY id").fetchall())
        lines = [password_line(m, self.mqtt_password(m)) for m in meters]
        lines.append(password_line("headend", headend_password))
        readers = []
        if ingest_password:
            lines.append(password_line("ingest", ingest_password))
            readers.append("ingest")
        (d / "passwd").write_text("\n".join(lines) + "\n")
        (d / "acl").write_text(meter_acl(meters, ["headend"], readers))
        return d / "passwd", d / "acl"

    # ---------------- broker connection ----------------
    def connect(self, timeout=10):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=not self.persistent)
        if self.user is not None:
            c.username_pw_set(self.user, self.password)
        if self.ca_file:
            c.tls_set(ca_certs=self.ca_file)
        c.reconnect_delay_set(0.2, 5)   # back soon after a broker restart
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        try:
            c.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise HeadEndError(f"cannot reach broker {self.host}:{self.port}: {e}") from None
        c.loop_start()
        if not self._connected.wait(timeout) or self._rc != 0:
            c.loop_stop()
            self._connected.clear()
            raise HeadEndError(f"broker {self.host}:{self.port} did not accept the connection "
                               f"({self._rc or 'no answer'})")
        return self

    def close(self):
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        self._connected.clear()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()
        self.db.close()

    def _on_connect(self, client, userdata, flags, rc, props=None):
        self._rc = rc
        if rc == 0:
            uplink = [("m/+/t", 1), ("m/+/e", 1), ("m/+/s", 1), ("m/+/a", 1)] if self.ingests else []
            client.subscribe(uplink + [("m/+/or", 0)])
        else:
            client.disconnect()   # refused: no point in retrying with the same credentials
        self._connected.set()

    def _on_message(self, client, userdata, msg):
        try:
            parts = msg.topic.split("/")
            if len(parts) != 3 or parts[0] != "m":
                return
            self.ingest(parts[1], parts[2], msg.payload)
        except Exception as e:  # noqa: BLE001 - one bad message must not stop ingestion
            print(f"headend: cannot ingest {msg.topic}: {e!r}", file=sys.stderr)

    # ---------------- ingestion ----------------
    def ingest(self, meter, chan, payload):
        """Store one uplink message; returns how many records (an ack: 1) it added."""
        now = time.time()
        if chan in ("t", "e", "a") and not codec.verify_up(self.uplink_key(meter),
                                                           f"m/{meter}/{chan}", payload):
            # not signed by this meter's uplink key: dropped, and flagged
            self.alarm(meter, "forged_uplink", f"{chan}: {len(payload)} bytes")
            return 0
        if chan == "a":
            a = codec.parse_ack(payload)
            sent = self._sent.get((meter, a["n"]))
            if a["n"] and sent is not None and sent != a["h"]:
                self.alarm(meter, "ack_mismatch", f"n={a['n']}")
                return 0
            with self._cond:
                self._lock_meter(meter)
                if isinstance(a["detail"], dict) and a["detail"].get("id") == meter:
                    self._check_registers(meter, a["n"], a["detail"])   # a get state
                self.db.execute("INSERT INTO acks VALUES (?, ?, ?, ?, ?, ?)",
                                (meter, a["n"], a["code"], a["val"], json.dumps(a["detail"]), now))
                self._settle(meter, a, now)
                self.db.commit()
                self._acks[(meter, a["n"])] = a
                self._cond.notify_all()
            for fn in self.on_ack:
                fn(meter, a)
            return 1
        if chan == "s":
            with self._lock:
                self.db.execute("UPDATE meters SET online = ?, last_seen = ? WHERE id = ?",
                                (1 if payload[:1] == b"1" else 0, now, meter))
                self.db.commit()
            return 0
        if chan == "or":
            if self.ota is not None:
                self.ota.serve(meter, payload)   # a block of the image a meter asks for
            return 0
        if chan not in ("t", "e"):
            return 0
        recs = codec.unbatch(payload)
        taken = []
        with self._lock:
            self._lock_meter(meter)
            for r in recs:
                verdict = self._admit(meter, r) if r["kind"] != codec.BATT else "ok"
                if verdict:
                    self._store(meter, r, now, verdict == "ok")
                    taken.append(r)
            self.db.execute("UPDATE meters SET last_seen = ? WHERE id = ?", (now, meter))
            self.db.commit()
        for fn in self.on_record:
            for r in taken:
                fn(meter, r)
        return len(taken)

    # registers of `get state` that never go back on a genuine meter (the
    # command counter is saved before a command acts, outbox sequences and
    # event sequences are on flash before they are used); ml allows a
    # power cut's loss. A restored state directory brings them all back
    # (the counter shows it only to a get with an n the meter saw before).
    REGISTERS = (("n", 0), ("oq", 0), ("evs", 0), ("ml", POWER_CUT_ML))

    def _lock_meter(self, meter):
        """Begin the transaction that admits and stores one message of this
        meter, holding a lock that another process (a second ingestion
        worker) storing the same meter waits for until the commit: SQLite's
        write lock, taken at BEGIN IMMEDIATE; so the checks read what is stored."""
        if self.db.in_transaction:
            self.db.commit()
        self.db.execute("BEGIN IMMEDIATE")

    def _check_registers(self, meter, n, d):
        """Raise alarm `rollback` if a reported register is below the
        highest this meter reported before; keep the high marks. Judged
        only for the newest answer (command counter n above the last one
        judged, mark "ack"): two workers may store an older answer last."""
        row = self.db.execute("SELECT hi FROM marks WHERE meter = ? AND reg = 'ack'",
                              (meter,)).fetchone()
        if row is not None and n < row[0]:
            return
        self.db.execute("INSERT OR REPLACE INTO marks VALUES (?, 'ack', ?)", (meter, n))
        for reg, slack in self.REGISTERS:
            v = d.get(reg)
            if not isinstance(v, int) or isinstance(v, bool):
                continue
            row = self.db.execute("SELECT hi FROM marks WHERE meter = ? AND reg = ?",
                                  (meter, reg)).fetchone()
            if row is not None and v < row[0] - slack:
                self.alarm(meter, "rollback", f"{reg} {v} after {row[0]}", commit=False)
            elif row is None or v > row[0]:
                self.db.execute("INSERT OR REPLACE INTO marks VALUES (?, ?, ?)", (meter, reg, v))

    def alarm(self, meter, kind, detail="", commit=True):
        """Record a head-end alarm; commit=False: in the caller's transaction."""
        with self._lock:
            self.db.execute("INSERT INTO alarms VALUES (?, ?, ?, ?)",
                            (meter, kind, detail, time.time()))
            if commit:
                self.db.commit()
        print(f"headend: ALARM {meter} {kind} {detail}", file=sys.stderr)

    def alarms(self, meter):
        rows = self.db.execute("SELECT kind, detail, received FROM alarms WHERE meter = ? "
                               "ORDER BY rowid", (meter,))
        return [{"kind": k, "detail": d, "received": t} for k, d, t in rows]

    def _stored(self, meter, r):
        """The stored record with r's sequence, as a comparable tuple, or None."""
        if r["kind"] == codec.EVENT:
            row = self.db.execute("SELECT 2, evs, t, code, arg FROM events WHERE meter = ? AND "
                                  "seq = ?", (meter, r["seq"])).fetchone()
        else:
            row = self.db.execute("SELECT kind, t, ml, bal, COALESCE(last_seq, flags) FROM "
                                  "telemetry WHERE meter = ? AND seq = ?",
                                  (meter, r["seq"])).fetchone()
        return row

    @staticmethod
    def _content(r):
        if r["kind"] == codec.EVENT:
            return (2, r["evs"], r["t"], r["code"], r["arg"])
        if r["kind"] == codec.TELE:
            return (1, r["t"], r["ml"], r["bal"], r["flags"])
        return (3, r["t1"], r["ml1"], r["bal"], r["last"])

    def _admit(self, meter, r):
        """What to do with a record whose tag checked (docs/PROTOCOL.md §3.2):
        None drop it (a repeat of a stored one; or, with an alarm, another
        record under a stored sequence or a jump beyond what an outbox
        holds), "back" store it with an alarm but leave the meters row (a
        register went backwards: docs/SECURITY.md S6), "ok" store it.
        Registers are compared in outbox order (seq), not in the order of
        storing, which two ingestion workers do not keep: a pair of records
        whose register went down as seq went up raises the alarm whichever
        of the two is stored last."""
        row = self._stored(meter, r)
        if row is not None:
            if tuple(row) != self._content(r):
                self.alarm(meter, "seq_conflict", f"seq {r['seq']}", commit=False)
            return None
        top = self.db.execute(
            "SELECT MAX(s) FROM (SELECT MAX(seq, COALESCE(last_seq, 0)) AS s FROM telemetry "
            "WHERE meter = ? UNION ALL SELECT seq FROM events WHERE meter = ?)",
            (meter, meter)).fetchone()[0] or 0
        if r["seq"] > top + OUTBOX_SPAN:
            self.alarm(meter, "seq_jump", f"seq {r['seq']} after {top}", commit=False)
            return None
        if r["kind"] == codec.EVENT:
            table, v, slack, what = "events", r["evs"], 0, "event"
        else:
            table, slack, what = "telemetry", POWER_CUT_ML, "volume"
            v = r["ml"] if r["kind"] == codec.TELE else r["ml1"]
        col = "evs" if table == "events" else "ml"
        before, after = self.db.execute(
            f"SELECT (SELECT MAX({col}) FROM {table} WHERE meter = ? AND seq < ?), "
            f"(SELECT MIN({col}) FROM {table} WHERE meter = ? AND seq > ?)",
            (meter, r["seq"], meter, r["seq"])).fetchone()
        if before is not None and v < before - slack:
            self.alarm(meter, "rollback", f"{what} {v} after {before} (seq {r['seq']})", commit=False)
            return "back"
        if after is not None and after < v - slack:
            # the later record, stored already, is the one that went back
            self.alarm(meter, "rollback", f"{what} {after} after {v} (seq {r['seq']} stored late)",
                       commit=False)
        return "ok"

    def _store(self, meter, r, now, current=True):
        if r["kind"] == codec.BATT:
            # a battery meter's cell (PROTOCOL.md §3.3): the newest one is kept
            self.db.execute(
                "INSERT INTO battery VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meter) DO UPDATE SET "
                "t = excluded.t, mv = excluded.mv, pct = excluded.pct, days = excluded.days, "
                "received = excluded.received WHERE excluded.t >= battery.t",
                (meter, r["t"], r["mv"], r["pct"], r["days"], now))
            return
        if r["kind"] == codec.EVENT:
            self.db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (meter, r["seq"], r["evs"], r["t"], r["code"], r["arg"], now))
        elif r["kind"] == codec.TELE:
            self.db.execute(
                "INSERT OR IGNORE INTO telemetry (meter, seq, kind, t, ml, bal, flow, flags,"
                " tv, evs, rssi, received) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (meter, r["seq"], r["t"], r["ml"], r["bal"], r["flow"], r["flags"], r["tv"],
                 r["evs"], r["rssi"], now))
            if current:
                self.db.execute(
                    "UPDATE meters SET last_seq = ?, t = ?, ml = ?, bal = ?, flow = ?, flags = ?,"
                    " tv = ?, rssi = ? WHERE id = ? AND COALESCE(last_seq, 0) < ?",
                    (r["seq"], r["t"], r["ml"], r["bal"], r["flow"], r["flags"], r["tv"],
                     r["rssi"], meter, r["seq"]))
        else:
            self.db.execute(
                "INSERT OR IGNORE INTO telemetry (meter, seq, kind, t, ml, bal, last_seq, n,"
                " t0, ml0, dropped, received) VALUES (?, ?, 3, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (meter, r["seq"], r["t1"], r["ml1"], r["bal"], r["last"], r["n"], r["t0"],
                 r["ml0"], r["dropped"], now))

    def _settle(self, meter, a, now):
        # the command this ack answers; a top-up's fate goes to its record
        row = self.db.execute("SELECT op, body FROM commands WHERE meter = ? AND n = ? AND "
                              "acked IS NULL", (meter, a["n"])).fetchone()
        if row is None or a["n"] == 0:
            return
        self.db.execute("UPDATE commands SET code = ?, acked = ? WHERE meter = ? AND n = ?",
                        (a["code"], now, meter, a["n"]))
        if row[0] == "topup" and a["code"] not in (4, 5, 12):   # old, signature, storage: retry
            d = json.loads(row[1])
            self.db.execute("UPDATE topups SET status = ?, code = ? WHERE meter = ? AND account = ?"
                            " AND seq = ?", ("applied" if a["code"] in (0, 1) else "refused",
                                             a["code"], meter, d["a"], d["s"]))

    # ---------------- tariffs ----------------
    def publish_tariff(self, tariff, region=None, meter=None, timeout=10):
        """Tariff {"v", "at", "b", "sc"[, "e"]}: office-signed and retained on
        the region's topic, or as a command to one meter (returns its ack)."""
        if meter is not None:
            return self.command(meter, "tariff", timeout=timeout, tar=tariff)
        if region is None:
            raise HeadEndError("a tariff needs --region or --meter")
        topic = f"r/{region}/tariff"
        payload = self.sign_doc(b"tariff", dict(tariff, k="tariff", r=int(region)))
        self._need_client().publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout)
        with self._lock:
            self.db.execute("INSERT INTO tariffs VALUES (?, ?, ?, ?)",
                            (f"region/{region}", tariff.get("v"), payload.decode(), time.time()))
            self.db.commit()
        return payload

    def publish_fleet(self, op, region, meters=None, days=7, timeout=10, **args):
        """An office-signed fleet command to the meters of a region (all of
        them, or those listed), valid for `days`. Its sequence n is the
        current Unix second, above every earlier one."""
        with self._lock:
            last = self.db.execute("SELECT MAX(n) FROM fleet").fetchone()[0] or 0
            n = max(last + 1, int(time.time()))
            doc = dict(args, k="fleet", op=op, n=n, x=int(time.time()) + days * 86400)
            if meters:
                doc["m"] = list(meters)
            else:
                doc["r"] = int(region)
            payload = self.sign_doc(b"fleet", doc)
            self.db.execute("INSERT INTO fleet VALUES (?, ?, ?, ?)",
                            (n, int(region), payload.decode(), time.time()))
            self.db.commit()
        self._need_client().publish(f"r/{region}/fleet", payload, qos=1).wait_for_publish(timeout)
        return payload

    # ---------------- commands ----------------
    def _need_client(self):
        if self.client is None:
            raise HeadEndError("not connected to a broker")
        return self.client

    def _region_of(self, meter):
        row = self.db.execute("SELECT region FROM meters WHERE id = ?", (meter,)).fetchone()
        if row is None:
            raise HeadEndError(f"unknown meter {meter!r} (provision it first)")
        return row[0]

    def next_counter(self, meter):
        """The meter's next command counter, epoch included: e * 2^32 + n
        (docs/PROTOCOL.md §4.4); n = 0 does not exist, so the step from
        n = 2^32-1 goes to the next epoch's n = 1."""
        with self._lock:
            self._region_of(meter)
            self.db.execute("UPDATE meters SET ctr = ctr + 1 + (((ctr + 1) & 4294967295) = 0) "
                            "WHERE id = ?", (meter,))
            n = self.db.execute("SELECT ctr FROM meters WHERE id = ?", (meter,)).fetchone()[0]
            self.db.commit()
        return n

    def sealed_command(self, meter, op, n=None, **args):
        """(n, topic, payload) of a signed command, not yet sent; n is the
        32-bit counter the ack carries, the epoch goes in the body as "e"."""
        if n is None:
            ctr = self.next_counter(meter)
            n = ctr & 0xFFFFFFFF
            if ctr >> 32:
                args["e"] = ctr >> 32
        topic = f"m/{meter}/c"
        return n, topic, codec.seal(self.meter_key(meter), topic, codec.command(n, op, **args))

    def flush(self, timeout=10):
        """Wait until the broker has the last command sent without waiting
        for its ack (QoS 1 PUBACKs come in order): a meter that connects
        after this gets it from its persistent session."""
        info = getattr(self, "_last_publish", None)
        if info is not None:
            info.wait_for_publish(timeout)

    def wait_ack(self, meter, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cond:
            while (meter, n) not in self._acks:
                if not self.ingests:
                    a = self._stored_ack(meter, n)   # stored by an ingestion worker
                    if a is not None:
                        self._acks[(meter, n)] = a
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoAck(f"no ack from {meter} for command {n} within {timeout}s")
                self._cond.wait(left if self.ingests else min(left, 0.05))
            a = dict(self._acks[(meter, n)])
        a["result"] = codes.result_name(a["code"])
        return a

    def _stored_ack(self, meter, n):
        """The newest stored ack of command n, if it came after the command was sent."""
        row = self.db.execute(
            "SELECT a.n, a.code, a.val, a.detail FROM acks a JOIN commands c ON c.meter = a.meter "
            "AND c.n = a.n WHERE a.meter = ? AND a.n = ? AND a.received >= c.sent "
            "ORDER BY a.received DESC LIMIT 1", (meter, n)).fetchone()
        if row is None:
            return None
        return {"n": row[0], "code": row[1], "val": row[2], "detail": json.loads(row[3])}

    def resync_counter(self, meter, value):
        """Raise the meter's counter to value (e * 2^32 + n), the counter an
        `old` ack reports (docs/PROTOCOL.md §4.4); never lowers it. True if
        it moved."""
        with self._lock:
            moved = self.db.execute("UPDATE meters SET ctr = ? WHERE id = ? AND ctr < ?",
                                    (int(value), meter, int(value))).rowcount
            self.db.commit()
        return bool(moved)

    def command(self, meter, op, timeout=10, resync=True, **args):
        """Send one signed command and wait for its ack (dict with n, code,
        result, val, detail). Raises NoAck after timeout seconds. An `old`
        ack whose value (the meter's counter) is above ours means this
        head-end lost count (a restored database, a second head-end): the
        counter jumps to it and the command goes once more, under a new n."""
        a = self._command_once(meter, op, timeout, **args)
        if not resync or a.get("code") != codes.OLD:
            return a
        # these ops answer `old` of their own (a ledger or version check, with
        # another value): a `get`, which never does, tells the two apart
        probe = self._command_once(meter, "get", timeout, w="state") if op in OWN_OLD else a
        if (probe.get("code") == codes.OLD and isinstance(probe.get("val"), int)
                and self.resync_counter(meter, probe["val"])):
            print(f"headend: {meter}'s command counter is {a['val']}: resynchronised, "
                  f"sending {op} again", file=sys.stderr)
            a = self._command_once(meter, op, timeout, **args)
        return a

    def _command_once(self, meter, op, timeout, **args):
        n, topic, payload = self.sealed_command(meter, op, **args)
        if len(payload) > codec.MAX_DOWNLINK:
            raise HeadEndError(f"command too long ({len(payload)} bytes)")
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO commands VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                            (meter, n, op, json.dumps(args), time.time()))
            self.db.commit()
            self._acks.pop((meter, n), None)   # an n used before a lost count: not this one's ack
        self._sent[(meter, n)] = codec.command_hash(payload)
        self._last_publish = self._need_client().publish(topic, payload, qos=1)
        if timeout is None:
            return {"n": n}
        return self.wait_ack(meter, n, timeout)

    def topup(self, meter, amount, account=1, seq=None, timeout=10):
        """Online top-up with the ledger key (mqtt, account, seq). A new seq is
        issued unless given; the top-up is recorded before it is sent, so
        `retry` can re-send it with the same key (the meter applies it once)."""
        if amount <= 0:
            raise HeadEndError("amount must be positive")
        with self._lock:
            self._region_of(meter)
            if seq is None:
                row = self.db.execute("SELECT MAX(seq) FROM topups WHERE meter = ? AND account = ?",
                                      (meter, account)).fetchone()
                seq = (row[0] or 0) + 1
            self.db.execute("INSERT OR IGNORE INTO topups VALUES (?, ?, ?, ?, 'pending', NULL, ?)",
                            (meter, account, seq, amount, time.time()))
            self.db.commit()
        # the ack, whenever it comes, settles the top-up record (see _settle)
        a = self.command(meter, "topup", timeout=timeout, a=account, s=seq, v=amount)
        a["seq"] = seq
        return a

    def topup_status(self, meter, account, seq):
        row = self.db.execute("SELECT status, code FROM topups WHERE meter = ? AND account = ? AND "
                              "seq = ?", (meter, account, seq)).fetchone()
        return row and {"status": row[0], "code": row[1]}

    def retry(self, meter, timeout=10):
        rows = self.db.execute("SELECT account, seq, amount FROM topups WHERE meter = ? AND "
                               "status = 'pending' ORDER BY created", (meter,)).fetchall()
        return [self.topup(meter, amount, account, seq, timeout) for account, seq, amount in rows]

    def reissue(self, meter, account, seq, timeout=10):
        """The office's recovery of a top-up the customer says never arrived:
        the same top-up again under its own key (mqtt, account, seq). The
        meter applies it if it never did and answers USED if it did, so no
        answer, true or forged, can credit it twice (docs/CARD.md §6).
        Refused for a top-up voided for a refund: that key never applies."""
        row = self.db.execute("SELECT amount, status FROM topups WHERE meter = ? AND account = ? "
                              "AND seq = ?", (meter, account, seq)).fetchone()
        if row is None:
            raise HeadEndError(f"no top-up {account}/{seq} for {meter}")
        if row[1] == "void":
            raise HeadEndError(f"top-up {account}/{seq} was voided for a refund: it never applies")
        return self.topup(meter, row[0], account, seq, timeout)

    def _recovery_doc(self, meter, kind, days=1, **fields):
        # void and floor settle credit keys: office-signed, for this meter only,
        # short-lived (docs/PROTOCOL.md §4.4); sent inside the sealed command
        doc = dict(fields, k=kind, m=[meter], x=int(time.time()) + days * 86400)
        return self.sign_doc(kind.encode(), doc).decode()

    def void(self, meter, account, seq, card=False, timeout=10):
        """The office-signed void of a credit key, before a REFUND (money
        back, no re-issue): the meter settles the key without applying it.
        Ack ACCEPTED: it had not been applied and never will be; USED: it
        had been applied, nothing is owed (docs/CARD.md §5.2). A re-issue
        needs no void (`reissue`). The refund trusts the meter's answer:
        the ack is not signed by the meter (docs/SECURITY.md C10)."""
        d = self._recovery_doc(meter, "void", a=account, s=seq, c=1 if card else 0)
        a = self.command(meter, "void", timeout=timeout, d=d)
        if not card and a.get("code") in (codes.ACCEPTED, codes.USED):
            with self._lock:
                self.db.execute("UPDATE topups SET status = ?, code = ? WHERE meter = ? AND account = ? "
                                "AND seq = ?", ("void" if a["code"] == codes.ACCEPTED else "applied",
                                                a["code"], meter, account, seq))
                self.db.commit()
        return a

    def restore_floor(self, meter, account, card_floor, install_floor=0, timeout=10):
        """After a total state loss, or for a replacement meter with the same
        id: the meter takes no credit until this office-signed floor, which
        carries the recovery nonce it reports (get state "rn"). The MQTT floor is the
        last top-up sequence issued to the account; card_floor and
        install_floor come from the vending office's book. Top-ups still
        pending, or refused while the meter waited for its floor, fall below
        the floor and can never apply: they are re-issued under new
        sequences once the floor is acknowledged (the meter's ledger went
        with its state, so no key's history is left to protect)."""
        rn = (self.get(meter, timeout=timeout).get("detail") or {}).get("rn", 0)
        if not rn:
            raise HeadEndError(f"{meter} reports no state loss (no recovery nonce)")
        with self._lock:
            row = self.db.execute("SELECT MAX(seq) FROM topups WHERE meter = ? AND account = ?",
                                  (meter, account)).fetchone()
            # unacknowledged, or refused because the meter was waiting for this floor
            pending = self.db.execute("SELECT seq, amount FROM topups WHERE meter = ? AND account = ? "
                                      "AND (status = 'pending' OR status = 'refused' AND code = ?) "
                                      "ORDER BY seq", (meter, account, codes.REFUSED)).fetchall()
        d = self._recovery_doc(meter, "floor", a=account, c=card_floor, q=row[0] or 0,
                               i=install_floor, rn=rn)
        a = self.command(meter, "floor", timeout=timeout, d=d)
        if a.get("code") == codes.ACCEPTED:
            for seq, amount in pending:
                with self._lock:
                    self.db.execute("UPDATE topups SET status = 'reissued' WHERE meter = ? AND "
                                    "account = ? AND seq = ?", (meter, account, seq))
                    self.db.commit()
                self.topup(meter, amount, account, timeout=timeout)
        return a

    def valve(self, meter, open_, override=False, timeout=10):
        return self.command(meter, "valve", timeout=timeout, o=1 if open_ else 0, f=1 if override else 0)

    def configure(self, meter, key, value, timeout=10):
        return self.command(meter, "cfg", timeout=timeout, k=key, v=value)

    def timesync(self, meter, t=None, timeout=10):
        return self.command(meter, "time", timeout=timeout, t=int(t if t is not None else time.time()))

    def get(self, meter, what="state", timeout=10, **args):
        return self.command(meter, "get", timeout=timeout, w=what, **args)

    def add_arrears(self, meter, amount, seq=None, timeout=10):
        """Add arrears to a meter's debt register (PROTOCOL.md §4.4 `debt`),
        once per seq (the next one from the table unless given; re-send the
        same seq when no ack came). Returns the ack; val is the debt after."""
        with self._lock:
            if seq is None:
                seq = (self.db.execute("SELECT MAX(seq) FROM arrears WHERE meter = ?",
                                       (meter,)).fetchone()[0] or 0) + 1
            self.db.execute("INSERT OR IGNORE INTO arrears VALUES (?, ?, ?, NULL, NULL, ?)",
                            (meter, seq, amount, time.time()))
            self.db.commit()
        a = self.command(meter, "debt", timeout=timeout, v=amount, s=seq)
        with self._lock:
            self.db.execute("UPDATE arrears SET code = ?, debt = ? WHERE meter = ? AND seq = ?",
                            (a["code"], a["val"], meter, seq))
            self.db.commit()
        a["seq"] = seq
        return a

    def fetch_history(self, meter, kind="d", timeout=10):
        """Page the meter's frozen registers (PROTOCOL.md §4.6.1) back from
        the newest until a record already stored, or the oldest it keeps;
        store them. Returns how many records were new."""
        if kind not in ("d", "m"):
            raise HeadEndError("history kind is d (daily) or m (monthly)")
        have = self.db.execute("SELECT MAX(seq) FROM history WHERE meter = ? AND kind = ?",
                               (meter, kind)).fetchone()[0] or 0
        new, before = 0, 0
        while True:
            a = self.command(meter, "history", timeout=timeout, k=kind,
                             **({"b": before} if before else {}))
            if a["code"] != codes.ACCEPTED:
                raise HeadEndError(f"history: {a['result']}")
            page = [r for r in a["detail"] or [] if r[0] > have]
            with self._lock:
                for r in page:
                    self.db.execute("INSERT OR IGNORE INTO history VALUES "
                                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                    (meter, kind, *r, time.time()))
                self.db.commit()
            new += len(page)
            if len(page) < len(a["detail"] or []) or not page:
                return new
            before = page[-1][0]

    def history(self, meter, kind="d", limit=400):
        """Stored frozen records, oldest first, as dicts."""
        keys = ("seq", "t", "al", "span", "ml", "dml", "tc", "chg", "bal")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM history WHERE meter = ? AND kind = ? "
                               "ORDER BY seq DESC LIMIT ?", (meter, kind, limit))
        return [dict(zip(keys, r)) for r in rows][::-1]

    # ---------------- views ----------------
    def meters(self):
        out = []
        rows = self.db.execute("SELECT id, region, online, last_seen, t, ml, bal, flags, tv, rssi "
                               "FROM meters ORDER BY id").fetchall()
        for mid, region, online, seen, t, ml, bal, flags, tv, rssi in rows:
            alarms = [ALARMS[c] for (c,) in self.db.execute(
                "SELECT DISTINCT code FROM events WHERE meter = ? AND received > ? ORDER BY code",
                (mid, time.time() - 7 * 86400)) if c in ALARMS]
            # the head-end's own (kept until cleared: a rollback stays news)
            alarms += [k for (k,) in self.db.execute(
                "SELECT DISTINCT kind FROM alarms WHERE meter = ? ORDER BY kind", (mid,))]
            b = self.db.execute("SELECT t, mv, pct, days FROM battery WHERE meter = ?",
                                (mid,)).fetchone()
            out.append({"id": mid, "region": region, "online": online, "last_seen": seen,
                        "t": t, "ml": ml, "bal": bal, "valve": None if flags is None else flags & 1,
                        "tv": tv, "rssi": rssi, "alarms": alarms,
                        "battery": None if b is None else dict(zip(("t", "mv", "pct", "days"), b))})
        return out

    def telemetry(self, meter, limit=1000):
        rows = self.db.execute("SELECT seq, kind, t, ml, bal, flow, flags, tv, last_seq, n FROM "
                               "telemetry WHERE meter = ? ORDER BY seq DESC LIMIT ?", (meter, limit))
        keys = ("seq", "kind", "t", "ml", "bal", "flow", "flags", "tv", "last", "n")
        return [dict(zip(keys, r)) for r in rows][::-1]

    def events(self, meter, limit=1000):
        rows = self.db.execute("SELECT seq, evs, t, code, arg FROM events WHERE meter = ? "
                               "ORDER BY seq DESC LIMIT ?", (meter, limit))
        return [dict(zip(("seq", "evs", "t", "code", "arg"), r)) for r in rows][::-1]


# ---------------- command line ----------------
ROW = "{:<10} {:>6} {:>6} {:>12} {:>10} {:>5} {:>4} {:<19} {:>12} {}"


def _money(u):
    return "-" if u is None else f"{u / 100_000:.2f}"


def _battery(b):
    """A battery meter's cell as `meters` shows it: % of the usable charge
    left and days left (a mains meter: -)."""
    if b is None:
        return "-"
    return f"{b['pct']}% {b['days']}d" if b["days"] < 65535 else f"{b['pct']}% >179y"


def _ack_exit(a):
    detail = "" if a.get("detail") is None else "\n" + json.dumps(a["detail"], indent=1)
    print(f"ack {a['n']}: {a['result']} (code {a['code']}) value {a['val']}{detail}")
    return 0 if a["code"] in (0, 1) else 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="headend.py", description="Reference head-end for the meters.")
    ap.add_argument("--db", default=os.environ.get("HEADEND_DB", "headend.sqlite"))
    ap.add_argument("--master", help="master key file (default: <db>.master)")
    ap.add_argument("--broker", default=os.environ.get("HEADEND_BROKER", "127.0.0.1:1883"))
    ap.add_argument("--ca", default=os.environ.get("HEADEND_CA"), help="CA file: use TLS")
    ap.add_argument("--user", default=os.environ.get("HEADEND_USER"))
    ap.add_argument("--password", default=os.environ.get("HEADEND_PASSWORD"))
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an ack")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init")
    p = sub.add_parser("provision")
    p.add_argument("meter")
    p.add_argument("--region", type=int, required=True)
    p.add_argument("--state", help="the meter's state directory to write")
    p.add_argument("--tls", action="store_true", help="the meter connects with TLS (needs --ca)")
    p.add_argument("--keepalive", type=int, default=60)
    p.add_argument("--card-keys", metavar="ISSUER.json",
                   help="the vending station's issuer key file: add the meter's card keys")
    p.add_argument("--replaces", nargs=2, type=int, metavar=("ACCOUNT", "INSTALL_SEQ"),
                   help="a replacement meter: the old meter's binding (docs/CARD.md 5.3)")
    p = sub.add_parser("broker-files")
    p.add_argument("dir")
    p.add_argument("--headend-password", required=True)
    p.add_argument("--ingest-password", help="also the ingestion workers' user `ingest`")
    p = sub.add_parser("tariff")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--region", type=int)
    g.add_argument("--meter")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--block", action="append", required=True, metavar="UPTO_L:PRICE")
    p.add_argument("--at", type=int, default=0, help="activation time, Unix seconds")
    p.add_argument("--standing", type=int, default=0)
    p.add_argument("--epoch", type=int, help="tariff epoch: higher than the meters' is the reset")
    p = sub.add_parser("fleet")
    p.add_argument("--region", type=int, required=True)
    p.add_argument("--meters", help="comma-separated meter ids (default: the whole region)")
    p.add_argument("op", choices=["valvetest", "retire", "cell"])
    p.add_argument("--rev", type=int, help="retire: office key revisions below this one")
    p.add_argument("--days", type=int, default=7, help="days the command stays valid")
    p = sub.add_parser("topup")
    p.add_argument("meter")
    p.add_argument("amount", type=int)
    p.add_argument("--account", type=int, default=1)
    p.add_argument("--seq", type=int)
    p = sub.add_parser("retry")
    p.add_argument("meter")
    p = sub.add_parser("reissue", help="send a top-up again under its own key (applied at most once)")
    p.add_argument("meter")
    p.add_argument("account", type=int)
    p.add_argument("seq", type=int)
    p = sub.add_parser("void", help="office-signed void of a credit key before a refund")
    p.add_argument("meter")
    p.add_argument("account", type=int)
    p.add_argument("seq", type=int)
    p.add_argument("--card", action="store_true", help="a card credit (default: an online top-up)")
    p = sub.add_parser("floor", help="let a meter take credits again after a state loss / replacement")
    p.add_argument("meter")
    p.add_argument("account", type=int)
    p.add_argument("--card-floor", type=int, required=True, help="last card credit seq issued (office book)")
    p.add_argument("--install-floor", type=int, default=0, help="last installation card seq issued")
    p = sub.add_parser("valve")
    p.add_argument("meter")
    p.add_argument("action", choices=["open", "close"])
    p.add_argument("--override", action="store_true")
    p = sub.add_parser("config")
    p.add_argument("meter")
    p.add_argument("key")
    p.add_argument("value", help="JSON, e.g. 900 or '[20, 8]' or '\"auto\"'")
    p = sub.add_parser("timesync")
    p.add_argument("meter")
    p.add_argument("--time", type=int)
    p = sub.add_parser("get")
    p.add_argument("meter")
    p.add_argument("what", choices=["state", "log", "cfg"])
    p = sub.add_parser("debt", help="add arrears to a meter's debt register (repaid by the tariff's dr rule)")
    p.add_argument("meter")
    p.add_argument("amount", type=int, help="money units")
    p.add_argument("--seq", type=int, help="re-send this arrears sequence (default: the next)")
    p = sub.add_parser("history", help="fetch a meter's frozen daily/monthly registers into SQLite")
    p.add_argument("meter")
    p.add_argument("--kind", choices=["d", "m"], default="d")
    p = sub.add_parser("listen")
    p.add_argument("--seconds", type=float, default=0, help="0: until interrupted")
    sub.add_parser("meters")
    p = sub.add_parser("show")
    p.add_argument("meter")
    p.add_argument("--limit", type=int, default=24)
    import rollout
    rollout.add_parser(sub)
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except HeadEndError as e:
        print(f"headend: {e}", file=sys.stderr)
        return 3 if isinstance(e, NoAck) else 2


def _run(args):
    master = args.master or args.db + ".master"
    office = args.db + ".office.pem"
    if args.cmd == "init":
        p = new_master(master)
        if Path(office).exists():
            raise HeadEndError(f"{office} exists; refusing to replace the office key")
        key = OfficeKey.generate(rev=1)
        key.save(office)
        # the meters' part, public: simmeter.py --office, flash.py provision
        Path(args.db + ".office-public.json").write_text(json.dumps(office_secrets([key])))
        sqlite3.connect(args.db).executescript(SCHEMA)
        print(f"master key written to {p}, office signing key to {office} (keep both "
              f"secret; {office.removesuffix('.pem')}.json holds its revision); the meters' "
              f"public office keys to {args.db}.office-public.json; database {args.db}")
        return 0
    host, _, port = args.broker.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        raise HeadEndError(f"--broker wants HOST:PORT, got {args.broker!r}") from None
    he = HeadEnd(args.db, read_master(master), host or "127.0.0.1", port, args.user,
                 args.password, args.ca, office=office if Path(office).exists() else None)
    if args.cmd == "provision":
        if args.tls and not args.ca:
            raise HeadEndError("--tls needs --ca (the CA that signed the broker's certificate)")
        ca_pem = Path(args.ca).read_text() if args.tls else None
        card = None
        if args.card_keys:
            # the vending station's issuer masters: this meter's card secret (docs/CARD.md §3.2)
            from cardtool import load_issuer
            card = load_issuer(argparse.Namespace(test_keys=False, keys=args.card_keys)
                               ).meter_secrets(args.meter)
        he.provision(args.meter, args.region, args.state,
                     {"host": he.host, "port": he.port, "tls": bool(args.tls),
                      "keepalive": args.keepalive}, ca_pem, args.replaces, card)
        where = f" -> {args.state}" if args.state else ""
        print(f"provisioned {args.meter} in region {args.region}{where}")
        return 0
    if args.cmd == "broker-files":
        pw, acl = he.broker_files(args.dir, args.headend_password, args.ingest_password)
        print(f"wrote {pw} and {acl}")
        return 0
    if args.cmd == "meters":
        print(ROW.format("meter", "region", "online", "balance", "m3", "valve", "tv", "last seen",
                         "battery", "alarms"))
        for m in he.meters():
            seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["last_seen"])) if m["last_seen"] else "never"
            print(ROW.format(
                m["id"], m["region"], {1: "yes", 0: "no"}.get(m["online"], "?"), _money(m["bal"]),
                "-" if m["ml"] is None else f"{m['ml'] / 1e6:.3f}",
                {1: "open", 0: "shut"}.get(m["valve"], "?"), m["tv"] if m["tv"] is not None else "-",
                seen, _battery(m["battery"]), ",".join(m["alarms"]) or "-"))
        return 0
    if args.cmd == "show":
        for r in he.telemetry(args.meter, args.limit):
            print(f"T#{r['seq']} t={r['t']} ml={r['ml']} bal={_money(r['bal'])} flow={r['flow']} "
                  f"flags={r['flags']} tv={r['tv']}")
        for e in he.events(args.meter, args.limit):
            print(f"E#{e['seq']} t={e['t']} event {e['code']} arg {e['arg']}")
        return 0
    if args.cmd == "rollout":
        import rollout
        try:
            return rollout.command(he, args)
        except rollout.RolloutError as e:
            raise HeadEndError(str(e)) from None
    with he:
        if args.cmd == "listen":
            end = time.monotonic() + args.seconds if args.seconds else None
            until = f"for {args.seconds:g} s" if end else "until Ctrl-C"
            print(f"listening on {he.host}:{he.port} to m/+/t, m/+/e, m/+/s, m/+/a (telemetry, "
                  f"events, online status, acks) into {he.db_path}, {until}", flush=True)
            try:
                while end is None or time.monotonic() < end:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            return 0
        if args.cmd == "tariff":
            t = {"v": args.version, "at": args.at, "b": parse_blocks(args.block), "sc": args.standing}
            if args.epoch is not None:
                t["e"] = args.epoch
            if args.region is not None:
                he.publish_tariff(t, region=args.region)
                print(f"published tariff v{args.version} to region {args.region} (retained, signed)")
                return 0
            return _ack_exit(he.publish_tariff(t, meter=args.meter, timeout=args.timeout))
        if args.cmd == "fleet":
            extra = {"rev": args.rev} if args.op == "retire" else {}
            if args.op == "retire" and args.rev is None:
                raise HeadEndError("fleet retire needs --rev")
            if args.op == "cell" and not args.meters:
                raise HeadEndError("fleet cell needs --meters (a new cell is fitted in one meter)")
            meters = args.meters.split(",") if args.meters else None
            he.publish_fleet(args.op, args.region, meters, args.days, args.timeout, **extra)
            print(f"published fleet command {args.op} to region {args.region} (signed)")
            return 0
        if args.cmd == "topup":
            return _ack_exit(he.topup(args.meter, args.amount, args.account, args.seq, args.timeout))
        if args.cmd == "retry":
            rc = 0
            for a in he.retry(args.meter, args.timeout):
                rc = max(rc, _ack_exit(a))
            return rc
        if args.cmd == "reissue":
            return _ack_exit(he.reissue(args.meter, args.account, args.seq, args.timeout))
        if args.cmd == "void":
            return _ack_exit(he.void(args.meter, args.account, args.seq, args.card, args.timeout))
        if args.cmd == "floor":
            return _ack_exit(he.restore_floor(args.meter, args.account, args.card_floor,
                                              args.install_floor, args.timeout))
        if args.cmd == "valve":
            return _ack_exit(he.valve(args.meter, args.action == "open", args.override, args.timeout))
        if args.cmd == "config":
            try:
                value = json.loads(args.value)
            except ValueError:
                raise HeadEndError(f"config value must be JSON, got {args.value!r}") from None
            return _ack_exit(he.configure(args.meter, args.key, value, args.timeout))
        if args.cmd == "timesync":
            return _ack_exit(he.timesync(args.meter, args.time, args.timeout))
        if args.cmd == "get":
            return _ack_exit(he.get(args.meter, args.what, args.timeout))
        if args.cmd == "debt":
            return _ack_exit(he.add_arrears(args.meter, args.amount, args.seq, args.timeout))
        if args.cmd == "history":
            new = he.fetch_history(args.meter, args.kind, args.timeout)
            for r in he.history(args.meter, args.kind):
                print(f"{args.kind}#{r['seq']} t={r['t']} span={r['span']} ml={r['ml']} dml={r['dml']} "
                      f"chg={_money(r['chg'])} bal={_money(r['bal'])} al={r['al']}")
            print(f"{new} new records")
            return 0
    raise HeadEndError(f"unknown command {args.cmd}")


if __name__ == "__main__":
    sys.exit(main())
