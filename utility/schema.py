"""The head-end's tables (SQLAlchemy Core), one MetaData for every dialect.

The meters' tables keep the names and column order of the reference head-end
(tools/headend.py before the platform), so positional inserts and the docs
still hold. Every record a meter can send twice has a key that makes the
second copy a no-op (docs/HEADEND.md §1): telemetry and events (meter, seq),
acks (meter, n, tag), top-ups (meter, account, seq), history (meter, kind,
seq), ledger entries (meter, source, ref). Changing a table here needs a new
migration in utility/migrations/versions/ (tests/host/test_store.py checks
that the migrated schema equals this one).
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

# names for constraints and indexes, so migrations can refer to them on every dialect
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
})

# Integers from meters (mL, money units, counters e * 2^32 + n) pass 2^31: 64-bit.
# A surrogate key is SQLite's INTEGER PRIMARY KEY (its rowid) and BIGINT elsewhere.
Int = BigInteger
Id = BigInteger().with_variant(Integer(), "sqlite")


def _id():
    return Column("id", Id, primary_key=True, autoincrement=True)


# ---------------- meters and what they send ----------------
meters = Table(
    "meters", metadata,
    Column("id", Text, primary_key=True),
    Column("region", Int, nullable=False),
    Column("ctr", Int, nullable=False, server_default="0"),   # next command counter - 1
    Column("online", Integer),
    Column("last_seen", Float),
    Column("last_seq", Int, server_default="0"),
    Column("t", Int), Column("ml", Int), Column("bal", Int), Column("flow", Int),
    Column("flags", Int), Column("tv", Int), Column("rssi", Int),
    Column("building", Text),           # where it is installed (console: regions and buildings)
    Index(None, "region"),
    Index(None, "last_seen"),           # the meters silent for longest
)

telemetry = Table(
    "telemetry", metadata,
    Column("meter", Text, primary_key=True),
    Column("seq", Int, primary_key=True),
    Column("kind", Integer),          # 1 telemetry, 3 overflow summary (PROTOCOL.md §3.3/3.4)
    Column("t", Int), Column("ml", Int), Column("bal", Int), Column("flow", Int),
    Column("flags", Int), Column("tv", Int), Column("evs", Int), Column("rssi", Int),
    Column("last_seq", Int), Column("n", Int), Column("t0", Int), Column("ml0", Int),
    Column("dropped", Int),
    Column("received", Float),
    Index(None, "meter", "t"),
    Index(None, "t", "meter", "ml"),    # every meter over a period, without reading the rows
)

events = Table(
    "events", metadata,
    Column("meter", Text, primary_key=True),
    Column("seq", Int, primary_key=True),
    Column("evs", Int), Column("t", Int), Column("code", Integer), Column("arg", Int),
    Column("received", Float),
    Index(None, "meter", "t"),
    Index(None, "code", "received"),    # alarms across the fleet
)

acks = Table(
    "acks", metadata,
    Column("meter", Text, nullable=False),
    Column("n", Int, nullable=False),
    Column("code", Integer), Column("val", Int), Column("detail", Text),
    Column("received", Float),
    # the ack's uplink tag (hex): the same ack delivered twice has the same
    # tag, another answer to the same n (a re-sent command) has another one
    Column("tag", Text, nullable=False, server_default=""),
    UniqueConstraint("meter", "n", "tag"),
)

history = Table(
    "history", metadata,
    Column("meter", Text, primary_key=True),
    Column("kind", Text, primary_key=True),     # d daily, m monthly (PROTOCOL.md §4.6.1)
    Column("seq", Int, primary_key=True),
    Column("t", Int), Column("al", Int), Column("span", Int), Column("ml", Int),
    Column("dml", Int), Column("tc", Int), Column("chg", Int), Column("bal", Int),
    Column("received", Float),
    Index(None, "kind", "t"),           # per region by day: joined with meters.region
)

# a battery meter's newest cell record (PROTOCOL.md §3.3): one row per meter
battery = Table(
    "battery", metadata,
    Column("meter", Text, primary_key=True),
    Column("t", Int), Column("mv", Int), Column("pct", Int), Column("days", Int),
    Column("received", Float),
)

marks = Table(
    "marks", metadata,
    Column("meter", Text, primary_key=True),
    Column("reg", Text, primary_key=True),
    Column("hi", Int),
)

alarms = Table(
    "alarms", metadata,
    Column("meter", Text), Column("kind", Text), Column("detail", Text),
    Column("received", Float),
    _id(),
    Index(None, "meter"),
)

# ---------------- what the head-end sends ----------------
commands = Table(
    "commands", metadata,
    Column("meter", Text, primary_key=True),
    Column("n", Int, primary_key=True),
    Column("op", Text), Column("body", Text), Column("sent", Float),
    Column("code", Integer), Column("acked", Float),
    Column("hash", Text),       # codec.command_hash of the payload published (hex): what its ack's h is
)

topups = Table(
    "topups", metadata,
    Column("meter", Text, primary_key=True),
    Column("account", Int, primary_key=True),
    Column("seq", Int, primary_key=True),
    Column("amount", Int), Column("status", Text), Column("code", Integer),
    Column("created", Float),
)

arrears = Table(
    "arrears", metadata,
    Column("meter", Text, primary_key=True),
    Column("seq", Int, primary_key=True),
    Column("amount", Int), Column("code", Integer), Column("debt", Int), Column("created", Float),
)

tariffs = Table(
    "tariffs", metadata,
    Column("scope", Text), Column("version", Int), Column("body", Text), Column("published", Float),
    _id(),
)

fleet = Table(
    "fleet", metadata,
    Column("n", Int, primary_key=True, autoincrement=False),
    Column("region", Int), Column("body", Text), Column("published", Float),
)

rollouts = Table(
    "rollouts", metadata,
    Column("version", Int, primary_key=True, autoincrement=False),
    Column("board", Text, primary_key=True),
    Column("region", Int, primary_key=True, autoincrement=False),
    Column("grp", Integer), Column("status", Text), Column("sha", Text), Column("started", Float),
)

# what a head-end needs to carry a rollout on after a restart (tools/rollout.py)
rollout_plans = Table(
    "rollout_plans", metadata,
    Column("version", Int, primary_key=True, autoincrement=False),
    Column("board", Text, primary_key=True),
    Column("region", Int, primary_key=True, autoincrement=False),
    Column("image", LargeBinary),
    Column("params", Text),                     # JSON: the rules (tools/rollout.py RULES)
)

# ---------------- money ----------------
# One row per credit or charge, each under the key of what caused it, so a
# second delivery of the same ack, payment or history record adds nothing.
# amount is never negative; source says which way it goes (docs/HEADEND.md §1.3):
#   source  ref             amount
#   topup   ACCOUNT/SEQ     credit the meter applied (ack accepted or used)
#   arrears SEQ             debt added to the meter's register (ack of `debt`)
#   charge  d/SEQ           water charged on the meter's day SEQ (daily history chg)
#   refund  PAYMENT_ID      money paid back for a payment whose credit was refused
ledger = Table(
    "ledger", metadata,
    _id(),
    Column("meter", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("amount", Int, nullable=False),      # money units, >= 0
    Column("t", Int),                           # meter time, when known
    Column("recorded", Float, nullable=False),
    UniqueConstraint("meter", "source", "ref"),
    Index(None, "meter", "recorded"),
)

payments = Table(
    "payments", metadata,
    _id(),
    Column("provider_ref", Text, nullable=False, unique=True),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("meter", Text, nullable=False),
    Column("amount", Int, nullable=False),
    Column("status", Text, nullable=False),
    # the top-up that carries this payment's credit: one payment, one credit key
    Column("topup_account", Int), Column("topup_seq", Int),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("meter", "topup_account", "topup_seq"),
)

# ---------------- the console ----------------
users = Table(
    "users", metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("hash", Text, nullable=False),        # argon2 (argon2-cffi PasswordHasher)
    Column("role", Text, nullable=False),
    Column("created", Float),
    CheckConstraint("role IN ('operator', 'viewer')", name="role"),
)

audit = Table(
    "audit", metadata,
    _id(),
    Column("at", Float, nullable=False),
    Column("user", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text),
    Column("detail", JSON),
    Column("result", Text),             # what the action came to (pending until it ends)
    Index(None, "at"),
)

scheduled_tariffs = Table(
    "scheduled_tariffs", metadata,
    _id(),
    Column("region", Int),      # scope: a region, or
    Column("meter", Text),      # one meter
    Column("version", Int, nullable=False),
    Column("body", JSON, nullable=False),       # the tariff {"v", "at", "b", "sc"[, "e"]}
    Column("due", Float, nullable=False),       # when to publish
    Column("published", Float),                 # NULL until published
    Column("by_user", Text),
    # pending -> publishing -> published | refused | failed, or cancelled (console)
    Column("status", Text, nullable=False, server_default="pending"),
    Column("result", Text),
    CheckConstraint("(region IS NULL) <> (meter IS NULL)", name="scope"),
    Index(None, "published", "due"),
)
