"""Logins and roles. Passwords are argon2id hashes (argon2-cffi); a user is
an `operator` (may act) or a `viewer` (reads only). The user's row is read
again on every request, so a changed role or a removed user counts at once."""

import functools
import hashlib
import time

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from utility import schema as st

from . import audit, now, store

ROLES = ("operator", "viewer")
# a user's name: 1-64 printable characters, no space at either end. A login
# form's longer name is refused before anything is written: it can be no
# one's, and its audit row would be as long as the form let it be (500 kB)
NAME_MAX = 64
LOCKED = "refused: locked out"
WRONG = "refused: wrong name or password"
# a name with this many wrong passwords in a row within LOCK_S is refused
# for the rest of that window without its password being tried (counted
# from the audit rows of its logins, so every console on the store agrees)
LOCK_AFTER, LOCK_S = 5, 900
_LOGIN = "login_row"      # session key: the audit row id of the session's login
_hasher = PasswordHasher()
# verified when the name is unknown, so a login takes as long either way
_DUMMY = _hasher.hash("not a password")

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


class User(UserMixin):
    def __init__(self, row):
        self.id = str(row.id)
        self.name = row.name
        self.role = row.role

    @property
    def can_act(self):
        return self.role == "operator"


def init_app(app):
    login_manager.init_app(app)

    @app.context_processor
    def _user():
        return {"user": current_user}


@login_manager.user_loader
def _load(user_id):
    """The session's user, if its login is still open: each session names
    the audit row of its login, and a logout closes that row, so a copy of
    the cookie taken before the logout opens nothing afterwards."""
    with store().connect() as c:
        row = c.execute(sa.select(st.users).where(st.users.c.id == int(user_id))).first()
        login = c.execute(sa.select(st.audit.c.user, st.audit.c.action, st.audit.c.result)
                          .where(st.audit.c.id == session.get(_LOGIN, -1))).first()
    if row is None or login is None or tuple(login) != (row.name, "login", "ok"):
        return None
    return User(row)


def add_user(engine, name, password, role):
    """Create a user (the CLI's adduser). Raises ValueError on a bad role,
    an empty name or password, or a name taken."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or not password:
        raise ValueError("a user needs a name and a password")
    if len(name) > NAME_MAX or name != name.strip() or not name.isprintable():
        # "alice " or "alice\u200b" would show as alice in the audit log
        raise ValueError(f"a user's name is 1-{NAME_MAX} printable characters, "
                         "no space at either end")
    with engine.begin() as c:
        if c.execute(sa.select(st.users.c.id).where(st.users.c.name == name)).first():
            raise ValueError(f"user {name!r} exists")
        c.execute(st.users.insert().values(name=name, hash=_hasher.hash(password),
                                           role=role, created=time.time()))


def check_password(name, password):
    """The user's row if the password is right, else None."""
    with store().connect() as c:
        row = c.execute(sa.select(st.users).where(st.users.c.name == name)).first()
    try:
        _hasher.verify(row.hash if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return row


class LoginForm(FlaskForm):
    name = StringField("User", validators=[DataRequired(), Length(max=NAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired()])


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        attempt = _attempt(form.name.data)
        if attempt is None:
            flash(f"Too many wrong passwords: try again in {LOCK_S // 60} minutes.", "error")
            return render_template("login.html", form=form), 429
        row = check_password(form.name.data, form.password.data)
        if row is None:
            flash("Wrong name or password.", "error")
        else:
            audit.finish(attempt, "ok")
            session.clear()          # no state carried over from before the login
            login_user(User(row))
            session[_LOGIN] = attempt
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", form=form)


def _attempt(name):
    """The audit row of a login attempt about to try its password, written
    `refused: wrong name or password` before the password is checked (the
    login sets it `ok`); None if the name is locked: its last LOCK_AFTER
    logins within LOCK_S were all refused. The look and the row are one
    transaction, serialized per name (PostgreSQL: an advisory lock on the
    name; SQLite: the write lock its INSERT takes), so a burst of attempts
    at once gets LOCK_AFTER password checks, not one per console thread
    (12 of 40 before). A locked name's refusal is written once per lock,
    not per attempt: it costs no password check, so each was a nearly free
    audit row for anyone."""
    a = st.audit
    with store().begin() as c:
        if c.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(b"console/login/" + name.encode()).digest()[:8],
                                 "big", signed=True)
            c.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        mine = c.execute(a.insert().values(at=now(), user=name, action="login",
                                           result=WRONG)).inserted_primary_key[0]
        results = c.execute(sa.select(a.c.result).where(
            a.c.action == "login", a.c.user == name, a.c.at > now() - LOCK_S, a.c.id < mine)
            .order_by(a.c.id.desc()).limit(LOCK_AFTER)).scalars().all()
        if len(results) < LOCK_AFTER or not all(r.startswith("refused") for r in results):
            return mine
        if results[0] == LOCKED:         # the lock has its row
            c.execute(a.delete().where(a.c.id == mine))
        else:
            c.execute(a.update().where(a.c.id == mine).values(result=LOCKED))
    return None


def _safe_next(target):
    # only a path on this site: never an open redirect to another host.
    # Browsers read a backslash as "/" and drop tabs and newlines, so "/\x" and
    # "/<tab>/x" are "//x" to them: a path with either is refused too
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target and all(ch > " " for ch in target)):
        return target
    return url_for("views.meters")


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        audit.record(current_user.name, "logout", None, "ok")
        audit.finish(session[_LOGIN], "ok, ended by logout")
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def operator_required(view):
    """The view acts: only an operator. A viewer's request is refused (403)
    and the refusal is audited."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.can_act:
            audit.record(current_user.name, request.endpoint, _target(kwargs),
                         "refused: role viewer")
            abort(403)
        return view(*args, **kwargs)
    return wrapped


def _target(kwargs):
    return kwargs.get("meter") or kwargs.get("row_id") or request.form.get("target")
