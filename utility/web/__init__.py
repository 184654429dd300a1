"""The operators' web console (docs/HEADEND.md §Console).

    app = create_app("sqlite:///he.sqlite")                # read-only: pages, no actions
    app = create_app(url, headend=he, SILENT_HOURS=12)     # he: a connected HeadEnd

Flask, server-rendered Jinja2 pages, charts drawn as SVG on the server, no
JavaScript. Logins (Flask-Login, argon2 hashes), roles operator and
viewer, CSRF on every POST (Flask-WTF), an audit row for every action.

Other parts of the platform add their pages as blueprints in
`_blueprints()`; a blueprint's views see the store as `store()` and the
HeadEnd as `headend()` (None when the console is read-only).
"""

import secrets
import time

from flask import Flask, current_app, redirect, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from utility import store as _store

csrf = CSRFProtect()

DEFAULTS = {
    # cookies: never sent over plain HTTP, never readable by scripts, not
    # sent on cross-site POSTs (CSRF tokens are the defence; this is depth)
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_SECURE": True,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    "SILENT_HOURS": 24,          # a meter not heard from for longer is "silent" (alarms page)
    "ACK_TIMEOUT": 10.0,         # seconds an action waits for the meter's ack
    "SCHEDULER_INTERVAL": 30.0,  # seconds between looks at scheduled_tariffs; 0: no thread
    "CLOCK": time.time,          # injected in tests: the scheduler's and the pages' "now"
}


def create_app(store_url, headend=None, **config):
    """The console over the store at store_url. headend: a connected
    HeadEnd (tools/headend.py) that actions go through, or None for a
    read-only console (action forms are not shown, their POSTs refused)."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    # a fresh key per process unless given: sessions end at a restart
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.config.update(config)
    engine = _store.open_store(store_url)
    _store.migrate(engine)
    app.extensions["store"] = engine
    app.extensions["headend"] = headend
    csrf.init_app(app)
    _filters(app)
    from . import auth
    auth.init_app(app)
    _blueprints(app)

    @app.after_request
    def _no_framing(response):
        # no other site may frame a page (clickjacking an operator's or a
        # customer's click) or have a response sniffed as another type
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/")
    def index():
        return redirect(url_for("views.meters"))

    if headend is not None and app.config["SCHEDULER_INTERVAL"]:
        from .schedule import Scheduler
        app.extensions["scheduler"] = Scheduler(app).start()
    return app


def _blueprints(app):
    from . import actions, audit, auth, pay, views
    for bp in (auth.bp, views.bp, actions.bp, audit.bp):
        app.register_blueprint(bp)
    pay.init_app(app)        # online top-up: customer page, webhook, payments (docs/HEADEND.md)


def _filters(app):
    from utility import money
    app.add_template_filter(money.fmt, "money")

    @app.template_filter("utc")
    def utc(t):
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))

    @app.template_filter("m3")
    def m3(ml):
        """mL -> m³ with 3 decimals (litres), integers only."""
        return "-" if ml is None else f"{ml // 1_000_000:,}.{ml % 1_000_000 // 1000:03d}"

    @app.template_filter("litres")
    def litres(ml):
        return "-" if ml is None else f"{ml // 1000:,}"


def need_login(bp):
    """Every view of the blueprint bp needs a login (the operators' pages;
    not a customer's)."""
    @bp.before_request
    def _need_login():
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
    return bp


def store():
    """The SQLAlchemy Engine of the store (utility/store.py)."""
    return current_app.extensions["store"]


def headend():
    return current_app.extensions["headend"]


def now():
    return current_app.config["CLOCK"]()
