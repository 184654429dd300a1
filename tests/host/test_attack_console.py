"""Attacks on the operators' console (docs/SECURITY.md "Operators'
console"): a viewer acting, cross-site forms, password guessing, stolen or
fixed sessions, redirects after login, markup smuggled into the pages
through what meters and operators write into the store. Flask's test
client on SQLite and PostgreSQL."""

import pytest
from consolekit import Browser, meter_world, rows, token

from utility import schema as st

NOW = 1_767_600_000


@pytest.fixture()
def app(store_url):
    return meter_world(store_url, NOW)


def test_attack_console_password_guessing_locks_the_name(app):
    c = app.test_client()

    def attempt(password):
        return c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "alice",
                                      "password": password})
    for _ in range(5):
        assert attempt("guess").status_code == 200
    r = attempt("alicealice")                     # the right one, but too late
    assert r.status_code == 429 and c.get("/meters").status_code == 302
    assert rows(app, st.audit, st.audit.c.result == "refused: locked out")
    Browser(app, "bob", "bobbob")                 # another name is not locked


def test_attack_console_the_session_cookie_is_secure_httponly_and_samesite(app):
    c = app.test_client()
    r = c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "bob",
                               "password": "bobbob"})
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_attack_console_a_post_without_its_csrf_token_is_refused(app):
    b = Browser(app, "alice", "alicealice")
    r = b.post("/meters/M1/topup", {"amount": "5.00"}, csrf=False)
    assert r.status_code == 400 and "CSRF" in r.text
    r = b.post("/logout", csrf=False)
    assert r.status_code == 400
    assert b.get("/meters").status_code == 200     # still logged in: the logout was refused
    r = b.client.post("/meters/M1/topup", data={"amount": "5.00", "csrf_token": "forged"})
    assert r.status_code == 400


def test_attack_console_a_viewer_cannot_act_and_the_refusal_is_audited(app):
    b = Browser(app, "bob", "bobbob")
    for path, data in [("/meters/M1/topup", {"amount": "5.00"}),
                       ("/meters/M1/valve", {"action": "close"}),
                       ("/meters/M1/config", {"key": "report_s", "value": "900"}),
                       ("/meters/M1/building", {"building": "X"}),
                       ("/meters/M1/history", {}),
                       ("/tariffs", {"scope": "region", "target": "1", "version": "2",
                                     "blocks": "0:3.50"})]:
        assert b.post(path, data).status_code == 403, path
    refused = rows(app, st.audit, st.audit.c.user == "bob", st.audit.c.result == "refused: role viewer")
    assert len(refused) == 6
    page = b.get("/audit?user=bob").text
    assert page.count("refused: role viewer") == 6 and "actions.valve" in page
    assert rows(app, st.meters, st.meters.c.building.is_not(None)) == []
    assert rows(app, st.scheduled_tariffs) == []
    # an operator gets past the role check; this console is read-only (no head-end)
    a = Browser(app, "alice", "alicealice")
    assert a.post("/meters/M1/topup", {"amount": "5.00"}).status_code == 409
    (row,) = rows(app, st.audit, st.audit.c.user == "alice", st.audit.c.action == "topup")
    assert row.result == "refused: console is read-only" and row.target == "M1"


def test_attack_console_login_does_not_redirect_to_another_site(app):
    c = app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        r = c.post(f"/login?next={target}", data={"csrf_token": token(c.get("/login").text),
                                                  "name": "bob", "password": "bobbob"})
        assert r.status_code == 302 and r.location == "/meters", target
        c.post("/logout", data={"csrf_token": token(c.get("/meters").text)})
    r = c.post("/login?next=/alarms", data={"csrf_token": token(c.get("/login").text),
                                            "name": "bob", "password": "bobbob"})
    assert r.location == "/alarms"


def test_attack_console_a_session_from_before_the_login_is_not_kept(app):
    """A session planted before the login (fixation) carries nothing over,
    and a logout ends it: the old cookie no longer opens a page."""
    c = app.test_client()
    with c.session_transaction() as s:
        s["planted"] = "by the attacker"
    c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "bob",
                           "password": "bobbob"})
    with c.session_transaction() as s:
        assert "planted" not in s
    assert c.get("/meters").status_code == 200
    cookie = c.get_cookie("session").value
    c.post("/logout", data={"csrf_token": token(c.get("/meters").text)})
    assert c.get("/meters").status_code == 302
    # a copy of the cookie taken before the logout: still signed, but its login is closed
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/meters").status_code == 302


def test_attack_console_markup_from_the_store_is_shown_as_text(app):
    """What meters, the head-end and operators write (alarm details, a
    building name, an event the head-end stored) is escaped in every page
    and in the SVG charts' labels."""
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    with app.extensions["store"].begin() as c:
        c.execute(st.alarms.insert().values(meter="M1", kind="seq_jump", detail=evil, received=NOW))
        c.execute(st.meters.update().values(building=evil))
        c.execute(st.history.insert().values(meter="M1", kind="d", seq=1, t=NOW, al=0, span=1,
                                             ml=1, dml=5000, tc=0, chg=0, bal=0))
    b = Browser(app, "bob", "bobbob")
    for page in ("/meters", "/meters/M1", "/regions", "/alarms"):
        html = b.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html, page
        assert "&lt;script&gt;" in html, page
