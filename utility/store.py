"""The head-end's database: SQLite by default, PostgreSQL by URL.

    engine = open_store("headend.sqlite")                 # a path: SQLite
    engine = open_store("postgresql+psycopg://u:pw@db/he")  # a URL
    migrate(engine)                                       # Alembic upgrade to head

Tables are in utility/schema.py; docs/HEADEND.md §1 lists them and their
keys. Writes that a meter can repeat go through insert_ignore(), which
stores a row once per key on either dialect.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from utility import schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(Exception):
    """The store cannot be opened or migrated (a clear, user-facing reason)."""


def store_url(url_or_path) -> str:
    """A URL as given; a plain path is a SQLite file."""
    s = str(url_or_path)
    if "://" in s:
        return s
    return f"sqlite:///{Path(s).resolve()}"


def open_store(url_or_path) -> Engine:
    url = store_url(url_or_path)
    if url in ("sqlite://", "sqlite:///:memory:"):
        # one database in memory: every thread shares its single connection
        engine = create_engine(url, poolclass=StaticPool,
                               connect_args={"check_same_thread": False})
    elif url.startswith("sqlite"):
        # timeout: a writer waits up to 30 s for another connection's lock
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_wal)
    elif url.startswith("postgresql"):
        engine = create_engine(url, pool_pre_ping=True)
    else:
        raise StoreError(f"unsupported database URL {url!r}: a path (SQLite), sqlite:///FILE "
                         f"or postgresql+psycopg://USER:PW@HOST/DB")
    return engine


def _sqlite_wal(dbapi_conn, _record):
    # WAL: the console and the workers read while a worker writes
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (utility/migrations/versions/), in one
    transaction per migration; a no-op when it is there already."""
    from alembic import command
    from alembic.config import Config

    name = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except OperationalError as e:      # no server, no such database, refused, not a file
        raise StoreError(f"cannot open {name}: {str(e.orig).strip().splitlines()[-1]}") from None
    if "alembic_version" not in tables and "meters" in tables:
        raise StoreError(f"{name} was made by the "
                         "reference head-end before its migrations (no alembic_version table): "
                         "start from a new database")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def insert_ignore(conn, table, rows, keys=None) -> int:
    """INSERT rows (a dict or a list of dicts) into table, skipping any
    whose key is stored already (the primary key, or the unique columns
    keys); the number of rows inserted."""
    name = conn.dialect.name
    if name == "sqlite":
        stmt = sqlite.insert(table)
    elif name == "postgresql":
        stmt = postgresql.insert(table)
    else:
        raise StoreError(f"no insert-or-ignore for dialect {name}")
    # preserve_rowcount: psycopg's cursor is closed before SQLAlchemy would read it
    stmt = stmt.on_conflict_do_nothing(index_elements=keys).execution_options(preserve_rowcount=True)
    return conn.execute(stmt, rows).rowcount


def upsert(conn, table, row, keys, update) -> None:
    """INSERT row, or on a conflict on keys UPDATE the columns `update` to row's values."""
    name = conn.dialect.name
    stmt = (sqlite if name == "sqlite" else postgresql).insert(table).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=keys,
                                      set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt)


__all__ = ["StoreError", "insert_ignore", "migrate", "open_store", "schema", "store_url", "upsert"]
