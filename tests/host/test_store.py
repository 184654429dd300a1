"""utility.store on SQLite and on a real PostgreSQL server: the migrations
build exactly utility/schema.py's tables, and the keys store a record that
is delivered twice once (docs/HEADEND.md §1)."""

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from utility.schema import acks, ledger, metadata, payments, telemetry, users
from utility.store import StoreError, insert_ignore, migrate, open_store, store_url, upsert


def _migrated(url):
    engine = open_store(url)
    migrate(engine)
    return engine


def test_a_plain_path_is_a_sqlite_file(tmp_path):
    assert store_url(tmp_path / "he.sqlite") == f"sqlite:///{tmp_path / 'he.sqlite'}"
    assert store_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(StoreError):
        open_store("mysql://u@h/db")


def test_migrations_build_the_schema_exactly(store_url):
    engine = _migrated(store_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert tables == set(metadata.tables) | {"alembic_version"}
    migrate(engine)          # a second run is a no-op
    engine.dispose()


def test_a_record_delivered_twice_is_stored_once(store_url):
    engine = _migrated(store_url)
    row = {"meter": "M1", "seq": 7, "kind": 1, "t": 100, "ml": 5000, "bal": 1 << 40}
    ack = {"meter": "M1", "n": 3, "code": 0, "val": 0, "tag": "ab" * 8}
    entry = {"meter": "M1", "source": "topup", "ref": "1/4", "amount": 5000, "recorded": 1.0}
    with engine.begin() as conn:
        assert insert_ignore(conn, telemetry, row) == 1
        assert insert_ignore(conn, telemetry, dict(row, ml=1)) == 0
        assert insert_ignore(conn, acks, ack) == 1
        assert insert_ignore(conn, acks, ack) == 0
        assert insert_ignore(conn, acks, dict(ack, tag="cd" * 8)) == 1   # another answer to n 3
        assert insert_ignore(conn, ledger, entry) == 1
        assert insert_ignore(conn, ledger, dict(entry, amount=1)) == 0
        many = [dict(row, seq=s) for s in (6, 7, 8, 8)]
        assert insert_ignore(conn, telemetry, many) == 2
    with engine.connect() as conn:
        assert conn.execute(select(telemetry.c.seq, telemetry.c.ml).order_by(telemetry.c.seq)
                            ).all() == [(6, 5000), (7, 5000), (8, 5000)]
        assert conn.execute(select(telemetry.c.bal).where(telemetry.c.seq == 7)).scalar() == 1 << 40
        assert conn.execute(select(func.count()).select_from(acks)).scalar() == 2
        assert conn.execute(select(func.sum(ledger.c.amount))).scalar() == 5000
    engine.dispose()


def test_payments_keep_one_credit_per_payment(store_url):
    engine = _migrated(store_url)
    p = {"provider_ref": "pi_1", "idempotency_key": "k1", "meter": "M1", "amount": 100,
         "status": "pending", "topup_account": 1, "topup_seq": 9, "created": 1.0, "updated": 1.0}
    with engine.begin() as conn:
        conn.execute(payments.insert(), p)
    fresh = {"provider_ref": "pi_2", "idempotency_key": "k2", "topup_seq": 10}
    for same in ("provider_ref", "idempotency_key", "topup_seq"):    # topup_seq: the same credit
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(payments.insert(), dict(p, **dict(fresh, **{same: p[same]})))
    with engine.begin() as conn:
        conn.execute(payments.insert(), dict(p, **fresh))
    engine.dispose()


def test_users_have_a_known_role_and_a_unique_name(store_url):
    engine = _migrated(store_url)
    with engine.begin() as conn:
        conn.execute(users.insert(), {"name": "ann", "hash": "$argon2id$x", "role": "operator"})
    for bad in ({"name": "ann", "role": "viewer"}, {"name": "bob", "role": "root"}):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(users.insert(), dict(bad, hash="h"))
    with engine.begin() as conn:
        upsert(conn, users, {"name": "ann", "hash": "h2", "role": "viewer"}, ["name"], ["role"])
        assert conn.execute(select(users.c.hash, users.c.role)).all() == [("$argon2id$x", "viewer")]
    engine.dispose()


def test_a_database_of_the_old_reference_head_end_is_refused_clearly(tmp_path):
    db = tmp_path / "old.sqlite"
    sqlite3.connect(db).executescript("CREATE TABLE meters (id TEXT PRIMARY KEY, region INTEGER);")
    with pytest.raises(StoreError, match="before its migrations"):
        migrate(open_store(db))


# the console's queries (utility/web/queries.py) and the index each must be able to use
CONSOLE_QUERIES = [
    ("one meter's telemetry over a period",
     "SELECT t, ml FROM telemetry WHERE meter = 'M1' AND t >= 100 AND t < 200",
     "ix_telemetry_meter_t"),
    ("every meter's consumption over a period",
     "SELECT meter, MIN(ml), MAX(ml) FROM telemetry WHERE t >= 100 AND t <= 200 GROUP BY meter",
     "ix_telemetry_t_meter_ml"),
    ("one meter's events by time",
     "SELECT code, arg FROM events WHERE meter = 'M1' AND t >= 100 ORDER BY t",
     "ix_events_meter_t"),
    ("the fleet's alarm events of a week",
     "SELECT meter, code FROM events WHERE code IN (3, 4) AND received > 100",
     "ix_events_code_received"),
    ("the daily records of a period (per region through meters.region)",
     "SELECT meter, dml FROM history WHERE kind = 'd' AND t >= 100 AND t < 200",
     "ix_history_kind_t"),
    ("a region's meters",
     "SELECT id FROM meters WHERE region = 3",
     "ix_meters_region"),
    ("the meters silent for longest",
     "SELECT id FROM meters WHERE last_seen < 100 ORDER BY last_seen",
     "ix_meters_last_seen"),
]


@pytest.mark.parametrize("what, query, index", CONSOLE_QUERIES, ids=[q[0] for q in CONSOLE_QUERIES])
def test_the_console_queries_can_use_their_index(store_url, what, query, index):
    engine = _migrated(store_url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query))
        else:
            # an empty table is scanned whatever the indexes: ask whether the index can serve
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + query))
    engine.dispose()
    assert index in plan, f"{what}: {plan}"
