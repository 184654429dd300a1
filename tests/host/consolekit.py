"""Helpers of the console tests: an app over a migrated store, users, a
logged-in Flask test client that sends the CSRF token as a form would."""

import re

import sqlalchemy as sa

from utility import schema as st
from utility.web import create_app
from utility.web.auth import add_user

_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                    r'type="hidden" name="csrf_token" value="([^"]+)"')


def make_app(store_url, headend=None, **config):
    app = create_app(store_url, headend=headend, SCHEDULER_INTERVAL=0, **config)
    return app


def token(html):
    m = _TOKEN.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1) or m.group(2)


class Browser:
    """A test client logged in as one user; post() carries the CSRF token
    of the page it last fetched, as the page's own form would."""

    def __init__(self, app, name, password):
        self.client = app.test_client()
        self.name = name
        page = self.client.get("/login")
        r = self.client.post("/login", data={"csrf_token": token(page.text), "name": name,
                                             "password": password})
        assert r.status_code == 302, r.text
        self.last = self.client.get("/meters")

    def get(self, path, **kw):
        r = self.client.get(path, **kw)
        if r.status_code == 200:
            self.last = r
        return r

    def post(self, path, data=None, csrf=True):
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = token(self.last.text)
        return self.client.post(path, data=data)


def users(app, **roles):
    """users(app, alice="operator", bob="viewer"): password = name * 2."""
    for name, role in roles.items():
        add_user(app.extensions["store"], name, name * 2, role)


def meter_world(store_url, now):
    """The console at clock `now` with users alice (operator) and bob
    (viewer), password = name twice, and meter M1."""
    app = make_app(store_url, CLOCK=lambda: now)
    users(app, alice="operator", bob="viewer")
    insert(app, st.meters, {"id": "M1", "region": 1, "last_seen": now})
    return app


def rows(app, table, *where):
    with app.extensions["store"].connect() as c:
        return c.execute(sa.select(table).where(*where)).all()


def insert(app, table, values):
    with app.extensions["store"].begin() as c:
        c.execute(table.insert(), values)
