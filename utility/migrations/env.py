"""Alembic environment: utility.store.migrate() hands in an open connection;
the alembic command line (alembic -c utility/migrations/alembic.ini) uses
the URL in HEADEND_DB."""

import os

from alembic import context
from sqlalchemy import create_engine

from utility.schema import metadata
from utility.store import store_url


def _run(conn):
    # batch mode: SQLite cannot ALTER most things, Alembic rebuilds the table
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


conn = context.config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:
    with create_engine(store_url(os.environ.get("HEADEND_DB", "headend.sqlite"))).begin() as c:
        _run(c)
