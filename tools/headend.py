"""Reference head-end: the utility's side of docs/PROTOCOL.md.

CPython with paho-mqtt, on the platform's store (utility/store.py: SQLite by
default, PostgreSQL by URL; docs/HEADEND.md §1). It signs exactly as the
meter verifies, because it imports the firmware's own codec and HMAC
(firmware/comms/).

    headend.py [--db FILE|URL] [--master FILE] [--broker HOST:PORT] [--ca FILE]
               [--user NAME] [--password PW] COMMAND ...

    init                                  new master key and office signing key (files, mode
                                          0600), the meters' public office.json, database
    provision METER --region R [--state DIR] [--tls] [--card-keys ISSUER.json] [--building B]
                                          derive the meter's keys (card keys too, given the
                                          vending station's issuer file); write
                                          DIR/secrets.json and DIR/config.json for the meter
    broker-files DIR [--headend-password PW] [--ingest-password PW]
                                          Mosquitto password and ACL files for all meters
                                          (and the ingestion workers' user `ingest`)
    tariff (--region R | --meter ID) --version V --block UPTO_L:PRICE ... [--at EPOCH]
           [--standing UNITS_PER_DAY] [--epoch E] [--free-litres L] [--daily-free L:HOUR]
           [--min-charge UNITS] [--debt-recovery PERCENT:UNITS_PER_WEEK]
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
    listen [--seconds N]                  ingest telemetry, events, status into the store
    meters                                balance, volume, last seen and alarms per meter
    show METER [--limit N]                recent telemetry and events of one meter

Money is in money units (1/1000 of the minor currency unit); prices are money
units per m^3. Exit status: 0 done, 1 the meter refused (result code shown),
2 usage or connection error, 3 no acknowledgement in time.

--db is a SQLite file (default headend.sqlite, or HEADEND_DB) or a database
URL (postgresql+psycopg://USER:PW@HOST/DB); the key files sit next to a file
(DB.master, DB.office.pem), and are headend.master, headend.office.pem in
the working directory for a URL (or --master).

Python use (tests, make sim, the bench):  he = HeadEnd(db, master, host, port, ...);
he.connect(); he.provision(...); he.publish_tariff(...); he.topup(...); he.meters().
he.engine is the store (a SQLAlchemy Engine; tables in utility/schema.py).
"""

import argparse
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tools"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))          # the utility package
import codes
from comms import (
    codec,
    sign,
)
from office import OfficeKey, office_secrets
from storage.state import mark_provisioned

from utility import money
from utility import schema as S
from utility.store import StoreError, insert_ignore, migrate, open_store, upsert

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
#   bad_history    a history page outside PROTOCOL.md §4.6.1 (nothing of it stored)
#   bad_record     a record (or a get-state register) beyond the store's 64 bits (dropped)
#   ack_flood      more than ACKS_PER_COMMAND different acks of one command (not stored)
# A power cut may lose up to save_l litres not yet saved (docs/METERING.md;
# save_l is at most 1000): a volume that far below the highest is not a
# rollback. A restored outbox is caught by its sequence numbers instead.
POWER_CUT_ML = 1000 * 1000

# alarms of one kind stored per meter and hour (HeadEnd.alarm): beyond, counted, not stored
ALARM_REPEAT, ALARM_HOUR_S = 10, 3600
# different acks stored per command (HeadEnd._ack_room)
ACKS_PER_COMMAND = 8

UPLINK_ALARMS = ("forged_uplink", "seq_jump", "seq_conflict", "rollback", "ack_mismatch",
                 "bad_history", "bad_record", "ack_flood")

# a frozen register record's fields, in the order of PROTOCOL.md §4.6.1
HISTORY_KEYS = ("seq", "t", "al", "span", "ml", "dml", "tc", "chg", "bal")
# each field's range: the meter's own record format (storage/history.py:
# seq, t 32-bit unsigned, al 8-bit, span 16-bit, the registers 64-bit
# signed), the day's charge not below 0 (it is a ledger amount)
_I64 = (-(1 << 63), (1 << 63) - 1)
HISTORY_RANGES = dict(zip(HISTORY_KEYS, ((1, (1 << 32) - 1), (0, (1 << 32) - 1), (0, 255),
                                         (0, 0xFFFF), _I64, _I64, _I64, (0, _I64[1]), _I64)))
HISTORY_PAGE = 8                                    # records a page holds at most (§4.6.1 `c`)
# records a meter keeps (firmware/storage/history.py DAYS, MONTHS, a MicroPython
# module: its const() import keeps it out of CPython)
HISTORY_DEPTH = {"d": 96, "m": 40}

# ops that can answer `old` themselves, past the counter check (docs/PROTOCOL.md §4.4)
OWN_OLD = ("topup", "debt", "void", "floor", "tariff")


# ---------------- the ingestion's statements ----------------
# Built once, with the values as bound parameters (named b_* where a column
# of that name is set): SQLAlchemy computes each one's cache key once (it
# is memoized on the statement) and takes its compiled form from the
# engine's cache, so storing a record costs its parameters and the round
# trips, not building and compiling SQL (docs/HEADEND.md "How many meters
# one worker serves").
def _admission(table, stored):
    """One SELECT for one record of `table` (telemetry or events): the
    columns `stored` of the row under its sequence (seq NULL: none), the
    highest sequence stored (a record's own, the last one a summary covers,
    an event's), and the highest register (ml, or an event's evs) below the
    record's sequence and the lowest above it (HeadEnd._admit)."""
    meter, seq = bindparam("b_meter"), bindparam("b_seq")
    tt, ee = S.telemetry.alias("tt"), S.events.alias("ee")
    own = tt if table is S.telemetry else ee
    reg = own.c.ml if table is S.telemetry else own.c.evs

    def agg(fn, col, *where):
        return select(fn(col)).where(col.table.c.meter == meter, *where).scalar_subquery()

    one = select(literal_column("1").label("one")).subquery("one")
    return (select(table.c.seq, *stored,
                   agg(func.max, tt.c.seq), agg(func.max, tt.c.last_seq), agg(func.max, ee.c.seq),
                   agg(func.max, reg, own.c.seq < seq), agg(func.min, reg, own.c.seq > seq))
            .select_from(one.outerjoin(table, and_(table.c.meter == meter, table.c.seq == seq))))


_ADMIT_TELEMETRY = _admission(S.telemetry, (
    S.telemetry.c.kind, S.telemetry.c.t, S.telemetry.c.ml, S.telemetry.c.bal,
    func.coalesce(S.telemetry.c.last_seq, S.telemetry.c.flags)))
_ADMIT_EVENT = _admission(S.events, (S.events.c.evs, S.events.c.t, S.events.c.code,
                                     S.events.c.arg))
# a meter's last_seen, and its current registers from a telemetry record if
# it is newer than the one they came from (SET reads the row as it was)
CURRENT = ("t", "ml", "bal", "flow", "flags", "tv", "rssi")
_newer = func.coalesce(S.meters.c.last_seq, 0) < bindparam("b_seq", type_=BigInteger)
_SET_CURRENT = update(S.meters).where(S.meters.c.id == bindparam("b_meter")).values(
    last_seen=bindparam("b_now"),
    last_seq=case((_newer, bindparam("b_seq", type_=BigInteger)), else_=S.meters.c.last_seq),
    **{k: case((_newer, bindparam("b_" + k, type_=S.meters.c[k].type)), else_=S.meters.c[k])
       for k in CURRENT})
_SET_SEEN = update(S.meters).where(S.meters.c.id == bindparam("b_meter")).values(
    last_seen=bindparam("b_now"))
_LOCK_SQLITE = update(S.meters).where(S.meters.c.id == bindparam("b_meter")).values(id=S.meters.c.id)
_LOCK_PG = select(func.pg_advisory_xact_lock(bindparam("b_key", type_=BigInteger)))
_BATTERY_NEWER = update(S.battery).where(S.battery.c.meter == bindparam("b_meter"),
                                         S.battery.c.t <= bindparam("b_t"))


def meter_lock_key(meter):
    """The meter's PostgreSQL advisory lock key (a signed 64-bit integer):
    the first 8 bytes of a SHA-256 of its id, the same in every process and
    server version (two meters sharing one only wait for each other)."""
    return int.from_bytes(hashlib.sha256(b"headend/meter/" + meter.encode()).digest()[:8],
                          "big", signed=True)


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


def _int_pair(spec, what):
    try:
        a, b = spec.split(":")
        return [int(a), int(b)]
    except ValueError:
        raise HeadEndError(f"bad {what} {spec!r}: want {what.upper()}") from None


def tariff_from_args(args):
    """The tariff document the `tariff` command publishes (wire form,
    docs/PROTOCOL.md 4.3); social fields only when given."""
    t = {"v": args.version, "at": args.at, "b": parse_blocks(args.block), "sc": args.standing}
    if args.epoch is not None:
        t["e"] = args.epoch
    if args.free_litres is not None:
        t["fb"] = args.free_litres
    if args.daily_free is not None:
        t["fd"] = _int_pair(args.daily_free, "litres:hour")
    if args.min_charge is not None:
        t["mc"] = args.min_charge
    if args.debt_recovery is not None:
        t["dr"] = _int_pair(args.debt_recovery, "percent:units_per_week")
    return t


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
        self.engine = open_store(db)
        migrate(self.engine)
        self.db_name = self.engine.url.render_as_string(hide_password=True)
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
        # each store access is one transaction on a pooled connection; the
        # lock guards only the ack waiters' dictionary below
        self._cond = threading.Condition()
        self._acks = {}          # (meter, n) -> ack dict
        self._sent = {}          # (meter, n) -> codec.command_hash of the command published
        self._alarm_lock = threading.Lock()
        self._alarm_counts = {}  # (meter, kind) -> [start of its hour, alarms in it]
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
                  card=None, building=None):
        """Register a meter and derive its secrets. With state_dir, write the
        meter's secrets.json (keys, broker credentials, CA) and merge mqtt
        (host/port/tls/keepalive) and the id and region into its config.json.
        replaces=(account, install_seq): a replacement for a meter with the
        same id; its config carries the old binding, so it boots as a state
        loss and takes no credit before `floor` (docs/CARD.md §5.3).
        card: the meter's card section ({"rev", "rec"}, IssuerKeys.meter_secrets)
        when the head-end holds the vending station's issuer key file.
        building: where it is installed (the console sums per building);
        None leaves a stored one as it is."""
        # the meter's own rule for its id (docs/PROTOCOL.md §2, config.py)
        if not 1 <= len(meter_id) <= 16 or not all(c.isascii() and (c.isalnum() or c in "-_")
                                                   for c in meter_id):
            raise HeadEndError(f"bad meter id {meter_id!r}: 1..16 letters, digits, - or _")
        if not 0 <= int(region) < 1 << 16:
            raise HeadEndError("region must be 0..65535")
        with self.engine.begin() as c:
            row = {"id": meter_id, "region": int(region)}
            if building is not None:
                row["building"] = building
            upsert(c, S.meters, row, ["id"], list(row)[1:])
            if replaces is not None:
                # the new meter's outbox starts again at 1: the old meter's
                # records move to "<id>@<unix time>", so they are neither
                # conflicts nor a rollback of the new one
                old = f"{meter_id}@{int(time.time())}"
                for t in (S.telemetry, S.events):
                    c.execute(update(t).where(t.c.meter == meter_id).values(meter=old))
                c.execute(update(S.meters).where(S.meters.c.id == meter_id).values(last_seq=0))
                c.execute(delete(S.marks).where(S.marks.c.meter == meter_id))
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
        with self.engine.connect() as c:
            meters = dict(c.execute(select(S.meters.c.id, S.meters.c.region)
                                    .order_by(S.meters.c.id)).all())
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
            try:
                c.tls_set(ca_certs=self.ca_file)
            except OSError as e:     # missing file, or not a PEM certificate (ssl.SSLError)
                raise HeadEndError(f"--ca {self.ca_file}: cannot load the CA: {e}") from None
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
        self.engine.dispose()

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
        """Store one uplink message in one transaction; returns how many
        records (an ack: 1) were new to the store."""
        if chan in ("t", "e"):
            return self.ingest_records([(meter, chan, payload)])[0]
        now = time.time()
        if chan == "a":
            if not codec.verify_up(self.uplink_key(meter), f"m/{meter}/a", payload):
                # not signed by this meter's uplink key: dropped, and flagged
                self.alarm(meter, "forged_uplink", f"a: {len(payload)} bytes")
                return 0
            a = codec.parse_ack(payload)
            sent = self._sent.get((meter, a["n"])) or self._sent_hash(meter, a["n"])
            if a["n"] and sent is not None and sent != a["h"]:
                self.alarm(meter, "ack_mismatch", f"n={a['n']}")
                return 0
            with self.engine.begin() as c:
                self._lock_meters(c, [meter])
                # the tag tells a second delivery of this ack (stored already,
                # settled already) from another answer under the same n
                tag = bytes(payload[-codec.UP_TAG:]).hex()
                new = self._ack_room(c, meter, a["n"], tag) and insert_ignore(c, S.acks, {
                    "meter": meter, "n": a["n"], "code": a["code"], "val": a["val"],
                    "detail": json.dumps(a["detail"]), "received": now, "tag": tag})
                if new:
                    if isinstance(a["detail"], dict) and a["detail"].get("id") == meter:
                        self._check_registers(c, meter, a["n"], a["detail"])   # a get state
                    self._settle(c, meter, a, now)
            with self._cond:
                self._acks[(meter, a["n"])] = a
                self._cond.notify_all()
            for fn in self.on_ack:      # every ack heard, a repeat too (listeners are idempotent)
                fn(meter, a)
            return new
        if chan == "s":
            with self.engine.begin() as c:
                c.execute(update(S.meters).where(S.meters.c.id == meter).values(
                    online=1 if payload[:1] == b"1" else 0, last_seen=now))
            return 0
        if chan == "or" and self.ota is not None:
            self.ota.serve(meter, payload)   # a block of the image a meter asks for
        return 0

    def ingest_records(self, msgs):
        """Store telemetry and event messages [(meter, "t" or "e", payload)],
        of one meter or many, in order and in one transaction (an ingestion
        worker's batch: one commit for all); returns how many records of
        each were new to the store. A message not signed by its meter's
        uplink key is dropped and flagged. ValueError (a malformed batch
        under a valid tag) before anything is stored."""
        now = time.time()
        work = []
        for meter, chan, payload in msgs:
            if codec.verify_up(self.uplink_key(meter), f"m/{meter}/{chan}", payload):
                work.append((meter, codec.unbatch(payload)))
            else:
                work.append((meter, f"{chan}: {len(payload)} bytes"))
        taken, seen = [], []
        with self.engine.begin() as c:
            self._lock_meters(c, {m for m, recs in work if isinstance(recs, list)})
            for meter, recs in work:
                if isinstance(recs, list):
                    rs, newest = self._records(c, meter, recs, now)
                    taken.append(rs)
                    seen.append((meter, newest))
                else:
                    # not signed by this meter's uplink key: dropped, and flagged
                    self.alarm(meter, "forged_uplink", recs, c)
                    taken.append([])
            self._set_current(c, seen, now)
        for (meter, _), rs in zip(work, taken, strict=True):
            for fn in self.on_record:
                for r in rs:
                    fn(meter, r)
        return [len(rs) for rs in taken]

    def _records(self, c, meter, recs, now):
        """Admit and store one message's records under the meter's lock:
        the records that were new, and the highest-sequence telemetry record
        among them taken as current (or None)."""
        taken = []
        newest = None
        for r in recs:
            if self._too_big(c, meter, r):
                continue
            verdict = self._admit(c, meter, r) if r["kind"] != codec.BATT else "ok"
            # stored by now (another worker's copy) counts as a repeat too
            if verdict and self._store(c, meter, r, now):
                taken.append(r)
                if verdict == "ok" and r["kind"] == codec.TELE and (
                        newest is None or r["seq"] > newest["seq"]):
                    newest = r
        return taken, newest

    def _ack_room(self, c, meter, n, tag):
        """Whether an ack of command n is stored: only when it answers a
        command sent (nothing reads any other: the console and wait_ack join
        acks with commands; n 0, the answer to a region tariff or fleet
        command, goes to the listeners only), and only ACKS_PER_COMMAND
        different answers to one n (a meter answers a redelivered command
        again, rarely twice). The meter's owner can publish acks at will,
        each under a tag of its own: before, every one was a row. An ack
        stored already (tag) is a repeat: False, no alarm."""
        cm, ak = S.commands, S.acks
        mine = (ak.c.meter == meter, ak.c.n == n)
        sent, stored, repeat = c.execute(select(
            select(cm.c.n).where(cm.c.meter == meter, cm.c.n == n).scalar_subquery(),
            select(func.count()).where(*mine).scalar_subquery(),
            select(ak.c.n).where(*mine, ak.c.tag == tag).scalar_subquery())).one()
        if not n or sent is None or repeat is not None:
            return False
        if stored >= ACKS_PER_COMMAND:
            self.alarm(meter, "ack_flood", f"n={n}: more than {ACKS_PER_COMMAND} answers", c)
            return False
        return True

    def _too_big(self, c, meter, r):
        """True, with alarm `bad_record`, for a record with a field the
        store's 64-bit columns cannot hold (the volume registers are
        unsigned 64-bit on the wire; no genuine meter comes near 2^63 mL).
        It alone is dropped: storing it failed the whole message before."""
        big = [k for k, v in r.items() if isinstance(v, int) and not _I64[0] <= v <= _I64[1]]
        if big:
            self.alarm(meter, "bad_record", f"seq {r['seq']}: {big[0]} {r[big[0]]} beyond 64 bits", c)
        return bool(big)

    @staticmethod
    def _lock_meters(c, meters):
        """Begin the transaction that admits and stores messages of these
        meters with a lock per meter that another process (a second
        ingestion worker) storing one of them waits for until the commit,
        so the checks read what is stored. On PostgreSQL a transaction-level
        advisory lock on each meter's key (meter_lock_key), taken in the
        keys' order (two workers' batches holding the same two meters never
        wait for each other), in one round trip (psycopg pipelines an
        executemany); it needs no row, so the first records of a meter not
        in `meters` are serialized too (a row lock, SELECT ... FOR UPDATE,
        locks nothing when there is no row). On SQLite the database's write
        lock, taken by a first UPDATE (that changes nothing): an UPDATE
        begins a write transaction whether or not a row matches
        (tests/host/test_store_headend.py)."""
        if not meters:
            return
        if c.dialect.name == "sqlite":
            c.execute(_LOCK_SQLITE, {"b_meter": next(iter(meters))})
        else:
            c.execute(_LOCK_PG, [{"b_key": k} for k in sorted(map(meter_lock_key, meters))])

    @staticmethod
    def _set_current(c, seen, now):
        """last_seen of each meter in seen [(meter, record or None)], and its
        current registers from the record if it is newer than the one they
        came from: one executemany each (pipelined on PostgreSQL). Applying
        a message's newest record leaves the row as applying each in turn
        would; two messages of one meter in a batch, in any order, too."""
        current = [dict({"b_" + k: r[k] for k in CURRENT}, b_meter=m, b_seq=r["seq"], b_now=now)
                   for m, r in seen if r is not None]
        idle = [{"b_meter": m, "b_now": now} for m, r in seen if r is None]
        if current:
            c.execute(_SET_CURRENT, current)
        if idle:
            c.execute(_SET_SEEN, idle)

    # registers of `get state` that never go back on a genuine meter (the
    # command counter is saved before a command acts, outbox sequences and
    # event sequences are on flash before they are used); ml allows a
    # power cut's loss. A restored state directory brings them all back
    # (the counter shows it only to a get with an n the meter saw before).
    REGISTERS = (("n", 0), ("oq", 0), ("evs", 0), ("ml", POWER_CUT_ML))

    def _check_registers(self, c, meter, n, d):
        """Raise alarm `rollback` if a reported register is below the
        highest this meter reported before; keep the high marks. Judged
        only for the newest answer (command counter n above the last one
        judged, mark "ack"): two workers may store an older answer last."""
        mk = S.marks
        last = c.execute(select(mk.c.hi).where(mk.c.meter == meter, mk.c.reg == "ack")).scalar()
        if last is not None and n < last:
            return
        upsert(c, mk, {"meter": meter, "reg": "ack", "hi": n}, ["meter", "reg"], ["hi"])
        for reg, slack in self.REGISTERS:
            v = d.get(reg)
            if not isinstance(v, int) or isinstance(v, bool):
                continue
            if not _I64[0] <= v <= _I64[1]:     # no mark can hold it: the ack is kept, not it
                self.alarm(meter, "bad_record", f"get state {reg} {v} beyond 64 bits", c)
                continue
            hi = c.execute(select(mk.c.hi).where(mk.c.meter == meter, mk.c.reg == reg)).scalar()
            if hi is not None and v < hi - slack:
                self.alarm(meter, "rollback", f"{reg} {v} after {hi}", c)
            elif hi is None or v > hi:
                upsert(c, mk, {"meter": meter, "reg": reg, "hi": v}, ["meter", "reg"], ["hi"])

    def alarm(self, meter, kind, detail="", conn=None):
        """Record a head-end alarm; in conn's transaction when given (a
        second connection would wait for that transaction's write lock).
        At most ALARM_REPEAT of one kind per meter and hour are stored (by
        this process): a customer can make their meter raise one per
        publish (forged_uplink, seq_conflict ...), and a row per publish
        filled the store at the publisher's rate."""
        now = time.time()
        with self._alarm_lock:
            hour = self._alarm_counts.setdefault((meter, kind), [now, 0])
            if now - hour[0] >= ALARM_HOUR_S:
                hour[:] = [now, 0]
            hour[1] += 1
            n = hour[1]
        if n > ALARM_REPEAT:
            return
        if n == ALARM_REPEAT:
            detail = (f"{detail} (the {ALARM_REPEAT}th {kind} of {meter} within the hour: "
                      "more are not stored until it has passed)")
        row = {"meter": meter, "kind": kind, "detail": detail, "received": now}
        if conn is not None:
            conn.execute(S.alarms.insert(), row)
        else:
            with self.engine.begin() as c:
                c.execute(S.alarms.insert(), row)
        print(f"headend: ALARM {meter} {kind} {detail}", file=sys.stderr)

    def alarms(self, meter):
        al = S.alarms
        with self.engine.connect() as c:
            rows = c.execute(select(al.c.kind, al.c.detail, al.c.received)
                             .where(al.c.meter == meter).order_by(al.c.id)).all()
        return [{"kind": k, "detail": d, "received": t} for k, d, t in rows]

    @staticmethod
    def _content(r):
        if r["kind"] == codec.EVENT:
            return (2, r["evs"], r["t"], r["code"], r["arg"])
        if r["kind"] == codec.TELE:
            return (1, r["t"], r["ml"], r["bal"], r["flags"])
        return (3, r["t1"], r["ml1"], r["bal"], r["last"])

    def _admit(self, c, meter, r):
        """What to do with a record whose tag checked (docs/PROTOCOL.md §3.2):
        None drop it (a repeat of a stored one; or, with an alarm, another
        record under a stored sequence or a jump beyond what an outbox
        holds), "back" store it with an alarm but leave the meters row (a
        register went backwards: docs/SECURITY.md S6), "ok" store it.
        Registers are compared in outbox order (seq), not in the order of
        storing, which two ingestion workers do not keep: a pair of records
        whose register went down as seq went up raises the alarm whichever
        of the two is stored last."""
        event = r["kind"] == codec.EVENT
        row = c.execute(_ADMIT_EVENT if event else _ADMIT_TELEMETRY,
                        {"b_meter": meter, "b_seq": r["seq"]}).one()
        *stored, seq, last, ev_seq, before, after = row
        if stored[0] is not None:
            if ((2, *stored[1:]) if event else tuple(stored[1:])) != self._content(r):
                self.alarm(meter, "seq_conflict", f"seq {r['seq']}", c)
            return None
        top = max(seq or 0, last or 0, ev_seq or 0)
        if r["seq"] > top + OUTBOX_SPAN:
            self.alarm(meter, "seq_jump", f"seq {r['seq']} after {top}", c)
            return None
        if event:
            v, slack, what = r["evs"], 0, "event"
        else:
            slack, what = POWER_CUT_ML, "volume"
            v = r["ml"] if r["kind"] == codec.TELE else r["ml1"]
        if before is not None and v < before - slack:
            self.alarm(meter, "rollback", f"{what} {v} after {before} (seq {r['seq']})", c)
            return "back"
        if after is not None and after < v - slack:
            # the later record, stored already, is the one that went back
            self.alarm(meter, "rollback", f"{what} {after} after {v} (seq {r['seq']} stored late)", c)
        return "ok"

    def _store(self, c, meter, r, now):
        """Store one record; False if it was there already (the meters row
        is _set_current's)."""
        if r["kind"] == codec.BATT:
            # a battery meter's cell (PROTOCOL.md §3.3): the newest one is kept
            b = S.battery
            row = {"meter": meter, "t": r["t"], "mv": r["mv"], "pct": r["pct"],
                   "days": r["days"], "received": now}
            if not insert_ignore(c, b, row):
                c.execute(_BATTERY_NEWER, dict(row, b_meter=meter, b_t=r["t"]))
            return True
        if r["kind"] == codec.EVENT:
            return insert_ignore(c, S.events, {
                "meter": meter, "seq": r["seq"], "evs": r["evs"], "t": r["t"], "code": r["code"],
                "arg": r["arg"], "received": now}) == 1
        if r["kind"] == codec.TELE:
            cur = {k: r[k] for k in ("t", "ml", "bal", "flow", "flags", "tv", "rssi")}
            return insert_ignore(c, S.telemetry, dict(cur, meter=meter, seq=r["seq"], kind=1,
                                                      evs=r["evs"], received=now)) == 1
        return insert_ignore(c, S.telemetry, {
            "meter": meter, "seq": r["seq"], "kind": 3, "t": r["t1"], "ml": r["ml1"],
            "bal": r["bal"], "last_seq": r["last"], "n": r["n"], "t0": r["t0"], "ml0": r["ml0"],
            "dropped": r["dropped"], "received": now}) == 1

    def _settle(self, c, meter, a, now):
        # the command this ack answers; a top-up's fate goes to its record,
        # an applied one's credit to the ledger (once: its key is the top-up's)
        cm = S.commands
        row = c.execute(select(cm.c.op, cm.c.body).where(cm.c.meter == meter, cm.c.n == a["n"],
                                                          cm.c.acked.is_(None))).first()
        if row is None or a["n"] == 0:
            return
        c.execute(update(cm).where(cm.c.meter == meter, cm.c.n == a["n"])
                  .values(code=a["code"], acked=now))
        if row.op == "topup" and a["code"] not in (4, 5, 12):   # old, signature, storage: retry
            d = json.loads(row.body)
            applied = a["code"] in (codes.ACCEPTED, codes.USED)
            tp = S.topups
            c.execute(update(tp).where(tp.c.meter == meter, tp.c.account == d["a"],
                                       tp.c.seq == d["s"])
                      .values(status="applied" if applied else "refused", code=a["code"]))
            if applied:
                self._ledger(c, meter, "topup", f"{d['a']}/{d['s']}", d["v"], now)

    @staticmethod
    def _ledger(c, meter, source, ref, amount, now, t=None):
        """One money entry (docs/HEADEND.md §1.3), once per (meter, source, ref)."""
        insert_ignore(c, S.ledger, {"meter": meter, "source": source, "ref": ref,
                                    "amount": int(amount), "t": t, "recorded": now})

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
        with self.engine.begin() as c:
            c.execute(S.tariffs.insert(), {"scope": f"region/{region}", "version": tariff.get("v"),
                                           "body": payload.decode(), "published": time.time()})
        return payload

    def publish_fleet(self, op, region, meters=None, days=7, timeout=10, **args):
        """An office-signed fleet command to the meters of a region (all of
        them, or those listed), valid for `days`. Its sequence n is the
        current Unix second, above every earlier one."""
        while True:     # a second head-end may take the same n: then the next one
            with self.engine.begin() as c:
                last = c.execute(select(func.max(S.fleet.c.n))).scalar() or 0
                n = max(last + 1, int(time.time()))
                doc = dict(args, k="fleet", op=op, n=n, x=int(time.time()) + days * 86400)
                if meters:
                    doc["m"] = list(meters)
                else:
                    doc["r"] = int(region)
                payload = self.sign_doc(b"fleet", doc)
                if insert_ignore(c, S.fleet, {"n": n, "region": int(region),
                                              "body": payload.decode(), "published": time.time()}):
                    break
        self._need_client().publish(f"r/{region}/fleet", payload, qos=1).wait_for_publish(timeout)
        return payload

    # ---------------- commands ----------------
    def _need_client(self):
        if self.client is None:
            raise HeadEndError("not connected to a broker")
        return self.client

    def _region_of(self, meter):
        with self.engine.connect() as c:
            region = c.execute(select(S.meters.c.region).where(S.meters.c.id == meter)).scalar()
        if region is None:
            raise HeadEndError(f"unknown meter {meter!r} (provision it first)")
        return region

    def next_counter(self, meter):
        """The meter's next command counter, epoch included: e * 2^32 + n
        (docs/PROTOCOL.md §4.4); n = 0 does not exist, so the step from
        n = 2^32-1 goes to the next epoch's n = 1."""
        m = S.meters
        step = m.c.ctr + 1 + case(((m.c.ctr + 1) % (1 << 32) == 0, 1), else_=0)
        with self.engine.begin() as c:
            # one statement: two head-ends never draw the same counter
            n = c.execute(update(m).where(m.c.id == meter).values(ctr=step)
                          .returning(m.c.ctr)).scalar()
        if n is None:
            raise HeadEndError(f"unknown meter {meter!r} (provision it first)")
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

    def _sent_hash(self, meter, n):
        """The hash of command n as recorded by whichever head-end sent it
        (an ingestion worker sent nothing itself), or None."""
        cm = S.commands
        with self.engine.connect() as c:
            h = c.execute(select(cm.c.hash).where(cm.c.meter == meter, cm.c.n == n)).scalar()
        return bytes.fromhex(h) if h else None

    def _stored_ack(self, meter, n):
        """The newest stored ack of command n, if it came after the command was sent."""
        ak, cm = S.acks, S.commands
        with self.engine.connect() as c:
            row = c.execute(
                select(ak.c.n, ak.c.code, ak.c.val, ak.c.detail)
                .join(cm, (cm.c.meter == ak.c.meter) & (cm.c.n == ak.c.n))
                .where(ak.c.meter == meter, ak.c.n == n, ak.c.received >= cm.c.sent)
                .order_by(ak.c.received.desc()).limit(1)).first()
        if row is None:
            return None
        return {"n": row.n, "code": row.code, "val": row.val, "detail": json.loads(row.detail)}

    def resync_counter(self, meter, value):
        """Raise the meter's counter to value (e * 2^32 + n), the counter an
        `old` ack reports (docs/PROTOCOL.md §4.4); never lowers it. True if
        it moved."""
        m = S.meters
        with self.engine.begin() as c:
            moved = c.execute(update(m).where(m.c.id == meter, m.c.ctr < int(value))
                              .values(ctr=int(value))).rowcount
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
        with self.engine.begin() as c:
            upsert(c, S.commands, {"meter": meter, "n": n, "op": op, "body": json.dumps(args),
                                   "sent": time.time(), "code": None, "acked": None,
                                   "hash": codec.command_hash(payload).hex()},
                   ["meter", "n"], ["op", "body", "sent", "code", "acked", "hash"])
        with self._cond:
            self._acks.pop((meter, n), None)   # an n used before a lost count: not this one's ack
        self._sent[(meter, n)] = codec.command_hash(payload)
        self._last_publish = self._need_client().publish(topic, payload, qos=1)
        if timeout is None:
            return {"n": n}
        return self.wait_ack(meter, n, timeout)

    def _keyed(self, table, owner, seq, **fields):
        """Record a row of table under owner (column -> value) and seq; a
        row already there is kept as it is (a re-send). seq None: the next
        free one, taken by an insert that a second head-end's row of the
        same seq makes fail, then the one after. Returns the seq."""
        while True:
            with self.engine.begin() as c:
                if seq is not None:
                    insert_ignore(c, table, dict(owner, seq=seq, **fields))
                    return seq
                nxt = (c.execute(select(func.max(table.c.seq)).where(
                    *(table.c[k] == v for k, v in owner.items()))).scalar() or 0) + 1
                if insert_ignore(c, table, dict(owner, seq=nxt, **fields)):
                    return nxt

    def topup(self, meter, amount, account=1, seq=None, timeout=10):
        """Online top-up with the ledger key (mqtt, account, seq). A new seq is
        issued unless given; the top-up is recorded before it is sent, so
        `retry` can re-send it with the same key (the meter applies it once)."""
        if amount <= 0:
            raise HeadEndError("amount must be positive")
        self._region_of(meter)
        seq = self._keyed(S.topups, {"meter": meter, "account": account}, seq,
                          amount=amount, status="pending", created=time.time())
        # the ack, whenever it comes, settles the top-up record (see _settle)
        a = self.command(meter, "topup", timeout=timeout, a=account, s=seq, v=amount)
        a["seq"] = seq
        return a

    def topup_status(self, meter, account, seq):
        tp = S.topups
        with self.engine.connect() as c:
            row = c.execute(select(tp.c.status, tp.c.code).where(
                tp.c.meter == meter, tp.c.account == account, tp.c.seq == seq)).first()
        return row and {"status": row[0], "code": row[1]}

    def retry(self, meter, timeout=10):
        tp = S.topups
        with self.engine.connect() as c:
            rows = c.execute(select(tp.c.account, tp.c.seq, tp.c.amount).where(
                tp.c.meter == meter, tp.c.status == "pending").order_by(tp.c.created)).all()
        return [self.topup(meter, amount, account, seq, timeout) for account, seq, amount in rows]

    def reissue(self, meter, account, seq, timeout=10):
        """The office's recovery of a top-up the customer says never arrived:
        the same top-up again under its own key (mqtt, account, seq). The
        meter applies it if it never did and answers USED if it did, so no
        answer, true or forged, can credit it twice (docs/CARD.md §6).
        Refused for a top-up voided for a refund: that key never applies."""
        tp = S.topups
        with self.engine.connect() as c:
            row = c.execute(select(tp.c.amount, tp.c.status).where(
                tp.c.meter == meter, tp.c.account == account, tp.c.seq == seq)).first()
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
            tp = S.topups
            with self.engine.begin() as c:
                c.execute(update(tp).where(tp.c.meter == meter, tp.c.account == account,
                                           tp.c.seq == seq)
                          .values(status="void" if a["code"] == codes.ACCEPTED else "applied",
                                  code=a["code"]))
                amount = c.execute(select(tp.c.amount).where(
                    tp.c.meter == meter, tp.c.account == account, tp.c.seq == seq)).scalar()
                if a["code"] == codes.USED and amount is not None:
                    # applied after all (its own ack lost): the credit goes to the ledger once
                    self._ledger(c, meter, "topup", f"{account}/{seq}", amount, time.time())
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
        tp = S.topups
        mine = (tp.c.meter == meter, tp.c.account == account)
        with self.engine.connect() as c:
            last = c.execute(select(func.max(tp.c.seq)).where(*mine)).scalar()
            # unacknowledged, or refused because the meter was waiting for this floor
            pending = c.execute(select(tp.c.seq, tp.c.amount).where(
                *mine, (tp.c.status == "pending")
                | ((tp.c.status == "refused") & (tp.c.code == codes.REFUSED))
            ).order_by(tp.c.seq)).all()
        d = self._recovery_doc(meter, "floor", a=account, c=card_floor, q=last or 0,
                               i=install_floor, rn=rn)
        a = self.command(meter, "floor", timeout=timeout, d=d)
        if a.get("code") == codes.ACCEPTED:
            for seq, amount in pending:
                with self.engine.begin() as c:
                    c.execute(update(tp).where(*mine, tp.c.seq == seq).values(status="reissued"))
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
        ar = S.arrears
        seq = self._keyed(ar, {"meter": meter}, seq, amount=amount, created=time.time())
        a = self.command(meter, "debt", timeout=timeout, v=amount, s=seq)
        with self.engine.begin() as c:
            c.execute(update(ar).where(ar.c.meter == meter, ar.c.seq == seq)
                      .values(code=a["code"], debt=a["val"]))
            if a["code"] in (codes.ACCEPTED, codes.USED):
                stored = c.execute(select(ar.c.amount).where(ar.c.meter == meter,
                                                             ar.c.seq == seq)).scalar()
                self._ledger(c, meter, "arrears", str(seq), stored, time.time())
        a["seq"] = seq
        return a

    def fetch_history(self, meter, kind="d", timeout=10):
        """Page the meter's frozen registers (PROTOCOL.md §4.6.1) back from
        the newest until a record already stored, or the oldest it keeps;
        store them. Returns how many records were new."""
        if kind not in ("d", "m"):
            raise HeadEndError("history kind is d (daily) or m (monthly)")
        h = S.history
        with self.engine.connect() as c:
            have = c.execute(select(func.max(h.c.seq)).where(h.c.meter == meter,
                                                             h.c.kind == kind)).scalar() or 0
        new, before, got = 0, 0, 0
        while True:
            a = self.command(meter, "history", timeout=timeout, k=kind,
                             **({"b": before} if before else {}))
            if a["code"] != codes.ACCEPTED:
                raise HeadEndError(f"history: {a['result']}")
            recs = self._history_page(meter, a["detail"], before)
            # a meter that pages on past the records it can hold is not
            # paging its ring: stop (what was stored stays)
            got += len(recs)
            if got > HISTORY_DEPTH[kind] + HISTORY_PAGE:
                self.alarm(meter, "bad_history", f"{kind}: more than {got - len(recs)} records")
                raise HeadEndError(f"history: {meter} sent more {kind} records than a meter "
                                   f"keeps ({HISTORY_DEPTH[kind]}); stopped")
            page = [r for r in recs if r[0] > have]
            now = time.time()
            with self.engine.begin() as c:
                for r in page:
                    rec = dict(zip(HISTORY_KEYS, r))
                    insert_ignore(c, h, dict(rec, meter=meter, kind=kind, received=now))
                    if kind == "d":     # the day's charge; monthly records repeat the days
                        self._ledger(c, meter, "charge", f"d/{rec['seq']}", rec["chg"], now,
                                     rec["t"])
            new += len(page)
            if len(page) < len(recs) or not page:
                return new
            before = page[-1][0]

    def _history_page(self, meter, detail, before):
        """The records of one history ack's detail, checked against
        PROTOCOL.md §4.6.1 before any is stored: a list of at most 8 lists
        of 9 integers in their fields' ranges, seq falling and below
        `before`. Anything else is the meter's (or its owner's) doing:
        alarm `bad_history`, nothing of the page stored, HeadEndError."""
        why = None
        if detail is None:
            return []
        if not isinstance(detail, list) or len(detail) > HISTORY_PAGE:
            why = f"not a list of at most {HISTORY_PAGE} records"
        else:
            last = before or 1 << 32
            for r in detail:
                if (not isinstance(r, list) or len(r) != len(HISTORY_KEYS)
                        or any(type(v) is not int for v in r)):
                    why = f"a record is not {len(HISTORY_KEYS)} integers: {json.dumps(r)[:80]}"
                    break
                bad = [k for k, v in zip(HISTORY_KEYS, r)
                       if not HISTORY_RANGES[k][0] <= v <= HISTORY_RANGES[k][1]]
                if bad:
                    why = f"seq {r[0]}: {bad[0]} {r[HISTORY_KEYS.index(bad[0])]} out of range"
                    break
                if r[0] >= last:
                    why = f"seq {r[0]} not below {last}"
                    break
                last = r[0]
        if why is not None:
            self.alarm(meter, "bad_history", why)
            raise HeadEndError(f"history: {meter} sent a malformed page ({why}); nothing of it stored")
        return detail

    def history(self, meter, kind="d", limit=400):
        """Stored frozen records, oldest first, as dicts."""
        h = S.history
        with self.engine.connect() as c:
            rows = c.execute(select(*(h.c[k] for k in HISTORY_KEYS))
                             .where(h.c.meter == meter, h.c.kind == kind)
                             .order_by(h.c.seq.desc()).limit(limit)).all()
        return [dict(zip(HISTORY_KEYS, r)) for r in rows][::-1]

    # ---------------- views ----------------
    def meters(self):
        m, e, al, b = S.meters, S.events, S.alarms, S.battery
        out = []
        with self.engine.connect() as c:
            rows = c.execute(select(m.c.id, m.c.region, m.c.online, m.c.last_seen, m.c.t, m.c.ml,
                                    m.c.bal, m.c.flags, m.c.tv, m.c.rssi).order_by(m.c.id)).all()
            for mid, region, online, seen, t, ml, bal, flags, tv, rssi in rows:
                recent = c.execute(select(e.c.code).distinct().where(
                    e.c.meter == mid, e.c.received > time.time() - 7 * 86400).order_by(e.c.code))
                alarms = [ALARMS[code] for code in recent.scalars() if code in ALARMS]
                # the head-end's own (kept until cleared: a rollback stays news)
                alarms += c.execute(select(al.c.kind).distinct().where(al.c.meter == mid)
                                    .order_by(al.c.kind)).scalars().all()
                cell = c.execute(select(b.c.t, b.c.mv, b.c.pct, b.c.days)
                                 .where(b.c.meter == mid)).first()
                out.append({"id": mid, "region": region, "online": online, "last_seen": seen,
                            "t": t, "ml": ml, "bal": bal,
                            "valve": None if flags is None else flags & 1, "tv": tv, "rssi": rssi,
                            "alarms": alarms,
                            "battery": None if cell is None
                            else dict(zip(("t", "mv", "pct", "days"), cell))})
        return out

    def telemetry(self, meter, limit=1000):
        t = S.telemetry
        cols = (t.c.seq, t.c.kind, t.c.t, t.c.ml, t.c.bal, t.c.flow, t.c.flags, t.c.tv,
                t.c.last_seq, t.c.n)
        with self.engine.connect() as c:
            rows = c.execute(select(*cols).where(t.c.meter == meter)
                             .order_by(t.c.seq.desc()).limit(limit)).all()
        keys = ("seq", "kind", "t", "ml", "bal", "flow", "flags", "tv", "last", "n")
        return [dict(zip(keys, r)) for r in rows][::-1]

    def events(self, meter, limit=1000):
        e = S.events
        keys = ("seq", "evs", "t", "code", "arg")
        with self.engine.connect() as c:
            rows = c.execute(select(*(e.c[k] for k in keys)).where(e.c.meter == meter)
                             .order_by(e.c.seq.desc()).limit(limit)).all()
        return [dict(zip(keys, r)) for r in rows][::-1]


# ---------------- command line ----------------
ROW = "{:<10} {:>6} {:>6} {:>12} {:>10} {:>5} {:>4} {:<19} {:>12} {}"


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
    ap.add_argument("--db", default=os.environ.get("HEADEND_DB", "headend.sqlite"),
                    help="SQLite file, or a database URL (postgresql+psycopg://USER:PW@HOST/DB)")
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
    p.add_argument("--building", help="where the meter is installed (the console's buildings)")
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
    # social fields (docs/METERING.md "Social tariffs"); each left out when not given
    p.add_argument("--free-litres", type=int, metavar="L",
                   help="free basic water: the first L litres of each billing period at zero (fb)")
    p.add_argument("--daily-free", metavar="L:HOUR",
                   help="a daily free allowance of L litres, renewed at the local HOUR (fd)")
    p.add_argument("--min-charge", type=int, metavar="UNITS",
                   help="minimum charge of a billing period, money units (mc)")
    p.add_argument("--debt-recovery", metavar="PERCENT:UNITS_PER_WEEK",
                   help="repay the debt register with PERCENT of each top-up and a weekly amount (dr)")
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
    except (HeadEndError, StoreError) as e:
        print(f"headend: {e}", file=sys.stderr)
        return 3 if isinstance(e, NoAck) else 2


def _run(args):
    # the key files: next to a SQLite file, or headend.* here for a database URL
    base = "headend" if "://" in args.db else args.db
    master = args.master or base + ".master"
    office = base + ".office.pem"
    if args.cmd == "init":
        p = new_master(master)
        if Path(office).exists():
            raise HeadEndError(f"{office} exists; refusing to replace the office key")
        key = OfficeKey.generate(rev=1)
        key.save(office)
        # the meters' part, public: simmeter.py --office, flash.py provision
        Path(base + ".office-public.json").write_text(json.dumps(office_secrets([key])))
        engine = open_store(args.db)
        migrate(engine)
        print(f"master key written to {p}, office signing key to {office} (keep both "
              f"secret; {office.removesuffix('.pem')}.json holds its revision); the meters' "
              f"public office keys to {base}.office-public.json; database "
              f"{engine.url.render_as_string(hide_password=True)}")
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
                      "keepalive": args.keepalive}, ca_pem, args.replaces, card, args.building)
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
                m["id"], m["region"], {1: "yes", 0: "no"}.get(m["online"], "?"), money.fmt(m["bal"]),
                "-" if m["ml"] is None else f"{m['ml'] / 1e6:.3f}",
                {1: "open", 0: "shut"}.get(m["valve"], "?"), m["tv"] if m["tv"] is not None else "-",
                seen, _battery(m["battery"]), ",".join(m["alarms"]) or "-"))
        return 0
    if args.cmd == "show":
        for r in he.telemetry(args.meter, args.limit):
            print(f"T#{r['seq']} t={r['t']} ml={r['ml']} bal={money.fmt(r['bal'])} flow={r['flow']} "
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
                  f"events, online status, acks) into {he.db_name}, {until}", flush=True)
            try:
                while end is None or time.monotonic() < end:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            return 0
        if args.cmd == "tariff":
            t = tariff_from_args(args)
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
                      f"chg={money.fmt(r['chg'])} bal={money.fmt(r['bal'])} al={r['al']}")
            print(f"{new} new records")
            return 0
    raise HeadEndError(f"unknown command {args.cmd}")


if __name__ == "__main__":
    sys.exit(main())
