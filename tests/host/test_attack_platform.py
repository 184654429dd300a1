"""A review's attacks on the head-end platform's web side (docs/SECURITY.md
O1, O11-O15, PAY8-PAY9): every route of the console's url_map against an
anonymous client and a viewer, login names that look like another's,
over-long and deeply nested input from anyone on the network. Flask's test
client on SQLite and PostgreSQL."""

import http.cookiejar
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
import sqlalchemy as sa
from consolekit import Browser, insert, rows, token, users
from paykit import SECRET, Served, console

from utility import payments as P
from utility import schema as st

NOW = 1_767_600_000

# what anyone may reach without a login: the login page, the customer's
# top-up pages, the provider's webhook (its signature is its login), the
# redirect to the meters page, static files; logging out needs nothing
PUBLIC = {"static", "index", "auth.login", "auth.logout", "pay.webhook", "pay.pay_form", "pay.done"}


@pytest.fixture()
def app(store_url):
    app = console(store_url, None, CLOCK=lambda: NOW)
    users(app, alice="operator", bob="viewer")
    insert(app, st.meters, {"id": "M1", "region": 1, "last_seen": NOW})
    insert(app, st.topups, {"meter": "M1", "account": 1, "seq": 1, "amount": 1_000_000,
                            "status": "refused", "code": 3, "created": NOW})
    insert(app, st.payments, {"provider_ref": "pay_1", "idempotency_key": "k1", "meter": "M1",
                              "amount": 1_000_000, "status": "refund_due", "topup_account": 1,
                              "topup_seq": 1, "created": NOW, "updated": NOW})
    return app


def _routes(app):
    """(endpoint, method, path) of every rule, arguments filled in."""
    out = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            args = {a: "M1" if a == "meter" else 1 for a in rule.arguments}
            path = app.url_for(rule.endpoint, **args)
            out += [(rule.endpoint, m, path) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


def test_attack_platform_every_route_refuses_anonymous_and_every_action_a_viewer(app):
    """Enumerated from the url_map, so a route added without its login or
    role check fails here: an anonymous GET or POST (with the anonymous
    session's own CSRF token, so CSRF is not what refuses it) is sent to
    the login, a viewer's POST is 403."""
    routes = _routes(app)
    guarded = [r for r in routes if r[0] not in PUBLIC]
    posts = [r for r in guarded if r[1] == "POST"]
    assert len(guarded) >= 16 and len(posts) >= 9, routes
    anon = app.test_client()
    csrf = token(anon.get("/login").text)
    for endpoint, method, path in guarded:
        r = anon.open(path, method=method, data={"csrf_token": csrf, "amount": "5", "action": "close",
                                                  "key": "report_s", "value": "900", "scope": "meter",
                                                  "target": "M1", "version": "2", "blocks": "0:1"})
        assert r.status_code == 302 and r.location.startswith("/login"), (endpoint, r.status_code)
    bob = Browser(app, "bob", "bobbob")
    for endpoint, _, path in posts:
        bob.get("/meters")
        assert bob.post(path, {"amount": "5", "action": "close"}).status_code == 403, endpoint
    assert rows(app, st.payments)[0].status == "refund_due"
    assert len(rows(app, st.audit, st.audit.c.result == "refused: role viewer")) == len(posts)


def test_attack_platform_a_locked_name_is_not_reached_by_its_look_alikes(app):
    """Five wrong passwords lock "alice"; her right password under another
    case, with a space or an invisible character, opens no session (the
    name is matched exactly, as the lock counts it) and she stays locked."""
    c = app.test_client()

    def attempt(name, password):
        return c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": name,
                                      "password": password})
    for _ in range(5):
        assert attempt("alice", "guess").status_code == 200
    for name in ("Alice", "ALICE", " alice", "alice ", "alice\t", "alice\u200b", "al\u0131ce"):
        assert attempt(name, "alicealice").status_code == 200, repr(name)
        assert c.get("/meters").status_code == 302, repr(name)
    assert attempt("alice", "alicealice").status_code == 429
    for name in ("Alice ", "bob\u200b", "x" * 65):
        with pytest.raises(ValueError, match="printable"):
            users(app, **{name: "viewer"})


def test_attack_platform_an_over_long_login_name_is_refused_before_it_is_stored(app):
    """Anyone can post the login form: a 400 kB name (the form's limit is
    500 kB) must not become a 400 kB audit row per attempt."""
    c = app.test_client()
    r = c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "a" * 400_000,
                               "password": "x"})
    assert r.status_code == 200 and c.get("/meters").status_code == 302
    with app.extensions["store"].connect() as conn:
        longest = conn.execute(sa.select(sa.func.max(sa.func.length(st.audit.c.user)))).scalar()
    assert (longest or 0) <= 64


@pytest.mark.parametrize("signed", [False, True])
def test_attack_platform_a_deeply_nested_webhook_body_is_refused_with_its_reason(app, signed):
    """4 KiB of "[" is 4096 levels of JSON, past the decoder's recursion
    limit: unsigned, it is refused 401 (its audit row says why); signed, 400
    "not JSON". Neither is a 500."""
    c = app.test_client()
    body = b'{"ref": ' + b"[" * 4000 + b"}"
    headers = P.signed_headers(SECRET, body, "dlv_deep", NOW) if signed else \
        {P.TIMESTAMP_HEADER: str(NOW), P.SIGNATURE_HEADER: "00" * 32}
    app.extensions["payments"].clock = lambda: NOW
    r = c.post("/payments/webhook", data=body, headers=headers)
    assert r.status_code == (400 if signed else 401), r.status_code
    reason = json.loads(r.data)["error"]
    assert reason == ("body is not JSON" if signed else "bad signature")
    audited = rows(app, st.audit, st.audit.c.action == "payment")
    assert [a.result for a in audited] == ["refused: " + reason]
    assert audited[0].detail == {"body_bytes": len(body)}
    assert len(rows(app, st.payments)) == 1


def test_attack_platform_a_locked_name_costs_one_audit_row_not_one_per_attempt(app):
    """A locked name is refused without its password being checked, so
    each further attempt was nearly free to send and still an audit row:
    anyone could fill the store through it. The lock's row is written
    once; the name stays locked."""
    c = app.test_client()

    def attempt(password="guess"):
        return c.post("/login", data={"csrf_token": token(c.get("/login").text), "name": "alice",
                                      "password": password})
    for _ in range(5):
        attempt()
    for _ in range(200):
        assert attempt().status_code == 429
    assert attempt("alicealice").status_code == 429
    logins = rows(app, st.audit, st.audit.c.action == "login")
    assert [r.result for r in logins] == ["refused: wrong name or password"] * 5 + ["refused: locked out"]


def test_attack_platform_webhook_refusals_and_duplicates_are_audited_at_a_bounded_rate(app):
    """Junk posted to the webhook, and a captured delivery replayed with new
    idempotency keys (the header is not signed), was an audit row each.
    Now at most AUDITS_PER_MINUTE a minute; the next row written says how
    many were not."""
    pay = app.extensions["payments"]
    clock = [NOW]
    pay.clock = lambda: clock[0]
    c = app.test_client()
    for i in range(150):
        assert c.post("/payments/webhook", data=b"junk %d" % i).status_code == 401
    body = json.dumps({"type": "payment.succeeded", "ref": "pay_2", "meter": "M1", "amount": 1000,
                       "currency": "EUR"}).encode()
    for i in range(50):
        r = c.post("/payments/webhook", data=body, headers=P.signed_headers(SECRET, body, f"dlv_r{i}", NOW))
        assert r.status_code == 200 and bool(json.loads(r.data).get("duplicate")) == (i > 0)
    audited = sorted(rows(app, st.audit, st.audit.c.action == "payment"), key=lambda a: a.id)
    assert [a.result for a in audited].count("accepted") == 1
    assert len(audited) == P.AUDITS_PER_MINUTE + 1
    clock[0] += 60
    c.post("/payments/webhook", data=b"junk")
    last = max(rows(app, st.audit, st.audit.c.action == "payment"), key=lambda a: a.id)
    assert last.detail["not_audited"] == 150 + 49 - P.AUDITS_PER_MINUTE
    assert len(rows(app, st.payments)) == 2


def test_attack_platform_numbers_past_what_the_store_holds_are_refused_with_a_reason(app):
    """A viewer's query (hours, region) or an operator's top-up (amount,
    account) with a number past 64 bits reached the store: a 500 on SQLite,
    and the top-up's INSERT failed on either. Now each is refused, 400, with
    its range."""
    bob = Browser(app, "bob", "bobbob")
    for path, why in (("/alarms?hours=99999999999999999999", "hours is 1"),
                      ("/alarms?hours=0", "hours is 1"),
                      ("/meters?region=99999999999999999999", "a region is 0 .. 65535")):
        r = bob.get(path)
        assert r.status_code == 400 and why in r.text, path
    alice = Browser(app, "alice", "alicealice")
    alice.get("/meters/M1")
    for form, why in (({"amount": "5", "account": "99999999999999999999"}, "the account is 0"),
                      ({"amount": "5", "account": "-1"}, "the account is 0"),
                      ({"amount": "99999999999999999999"}, "the amount is at most 20,000.00")):
        r = alice.post("/meters/M1/topup", form)
        assert r.status_code == 400 and why in r.text, form
    assert rows(app, st.topups, st.topups.c.seq > 1) == []


def test_attack_platform_a_burst_of_guesses_at_once_gets_no_more_than_the_lock_allows(store_url):
    """40 guesses sent at the same moment to the console under waitress (8
    threads): each looked at the lock before any had written its refusal,
    so 12 passwords were tried where the lock allows 5. The look and the
    attempt's row are now one transaction per name: exactly 5 are tried."""
    app = console(store_url, None, CLOCK=lambda: NOW)
    users(app, alice="operator")
    with Served(app) as site:
        def guess(go):
            web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
            page = web.open(site.url + "/login", timeout=30).read().decode()
            form = {"csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[1],
                    "name": "alice", "password": "guess"}
            go.wait()
            try:
                web.open(site.url + "/login", urllib.parse.urlencode(form).encode(), timeout=60)
            except urllib.error.HTTPError as e:
                assert e.code == 429
        go = threading.Barrier(40)
        burst = [threading.Thread(target=guess, args=(go,)) for _ in range(40)]
        for t in burst:
            t.start()
        for t in burst:
            t.join(120)
    results = [r.result for r in rows(app, st.audit, st.audit.c.action == "login")]
    assert results.count("refused: wrong name or password") == 5
    assert results.count("refused: locked out") == 1 and len(results) == 6
