"""The audit log: one row per action (who, when, what, target, result),
logins and refusals included. An action's row is written before it runs,
as `pending`, and completed with its result after, so an action that dies
half-way (a crash, a lost ack) still leaves its trace."""

import contextlib

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from utility import schema as st

from . import need_login, now, store

bp = need_login(Blueprint("audit", __name__))


def record(user, action, target, result, detail=None):
    """Write one finished row; returns its id."""
    with store().begin() as c:
        return c.execute(st.audit.insert().values(
            at=now(), user=user, action=action, target=None if target is None else str(target),
            detail=detail,
            result=result)).inserted_primary_key[0]


def finish(row_id, result):
    with store().begin() as c:
        c.execute(st.audit.update().where(st.audit.c.id == row_id).values(result=result))


class Outcome:
    """What an audited action sets as its result (text shown on the page)."""

    def __init__(self):
        self.result = "ok"


@contextlib.contextmanager
def audited(user, action, target, detail=None):
    """with audited(...) as out: ...; out.result = "ack accepted" -- an
    exception ends the row as "error: ..." and goes on up."""
    row_id = record(user, action, target, "pending", detail)
    out = Outcome()
    try:
        yield out
    except Exception as e:
        finish(row_id, f"error: {e}")
        raise
    finish(row_id, out.result)


@bp.get("/audit")
def page():
    q = sa.select(st.audit).order_by(st.audit.c.id.desc()).limit(500)
    for key in ("user", "action", "target"):
        if request.args.get(key):
            q = q.where(st.audit.c[key] == request.args[key])
    with store().connect() as c:
        rows = c.execute(q).all()
    return render_template("audit.html", rows=rows, args=request.args)
