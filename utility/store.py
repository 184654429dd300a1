"""The head-end's database: SQLite by default, PostgreSQL by URL.

    engine = open_store("headend.sqlite")                 # a path: SQLite
    engine = open_store("postgresql+psycopg://u:pw@db/he")  # a URL
    migrate(engine)                                       # Alembic upgrade to head

Tables are in utility/schema.py; docs/HEADEND.md §1 lists them and their
keys. Writes that a meter can repeat go through insert_ignore(), which
stores a row once per key on either dialect.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import bindparam, create_engine, event, inspect, text
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
    first = rows if isinstance(rows, dict) else rows[0]
    stmt = _on_conflict(conn.dialect, table, tuple(first), None if keys is None else tuple(keys))
    return conn.execute(stmt, rows).rowcount


def upsert(conn, table, row, keys, update) -> None:
    """INSERT row, or on a conflict on keys UPDATE the columns `update` to row's values."""
    conn.execute(_on_conflict(conn.dialect, table, tuple(row), tuple(keys), tuple(update)), row)


@functools.lru_cache(maxsize=512)
def _on_conflict(dialect, table, columns, keys, update=None):
    """INSERT INTO table (columns) VALUES (...) ON CONFLICT [(keys)] DO NOTHING,
    or DO UPDATE SET each of update to the new row's value: the same SQL on
    SQLite and PostgreSQL. Written as a text() statement, built once per
    table and columns: SQLAlchemy's own dialect INSERT ... ON CONFLICT has
    no cache key, so it was compiled again at every call (docs/HEADEND.md
    "How many meters one worker serves"); a text() statement's compiled
    form comes from the engine's cache. The bound parameters carry the
    columns' types (JSON, binary)."""
    if dialect.name not in ("sqlite", "postgresql"):
        raise StoreError(f"no insert-or-ignore for dialect {dialect.name}")
    q = dialect.identifier_preparer
    names = ", ".join(q.quote(c) for c in columns)
    binds = ", ".join(f":{c}" for c in columns)
    target = f" ({', '.join(q.quote(k) for k in keys)})" if keys else ""
    action = "DO NOTHING" if not update else "DO UPDATE SET " + ", ".join(
        f"{q.quote(c)} = excluded.{q.quote(c)}" for c in update)
    sql = (f"INSERT INTO {q.format_table(table)} ({names}) VALUES ({binds}) "
           f"ON CONFLICT{target} {action}")
    stmt = text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))
    # preserve_rowcount: psycopg's cursor is closed before SQLAlchemy would read it
    return stmt.execution_options(preserve_rowcount=True)


__all__ = ["StoreError", "insert_ignore", "migrate", "open_store", "schema", "store_url", "upsert"]
