"""Attacks on the online top-up's webhook (docs/HEADEND.md §Online top-up,
docs/SECURITY.md "Online payments"): the console served by waitress over a
real store (SQLite and PostgreSQL), deliveries over HTTP. The attacker
knows the webhook's URL and can replay or alter what a provider sent, but
does not hold the shared secret."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from paykit import SECRET, Served, console
from sqlalchemy.exc import IntegrityError

from utility import payments as P
from utility import store
from utility.schema import audit, meters, payments, topups


@pytest.fixture()
def site(store_url):
    engine = store.open_store(store_url)
    store.migrate(engine)
    with engine.begin() as c:
        store.insert_ignore(c, meters, [{"id": "M1", "region": 1}, {"id": "M2", "region": 1}])
    with Served(console(store_url, None)) as s:
        s.engine = engine
        yield s
    engine.dispose()


def body_of(meter="M1", minor=1000, ref="pay_1", currency="EUR", **extra):
    return json.dumps(dict({"type": "payment.succeeded", "ref": ref, "meter": meter, "amount": minor,
                            "currency": currency}, **extra)).encode()


def post(site, body, headers):
    req = urllib.request.Request(site.url + "/payments/webhook", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def deliver(site, body, key="dlv_1", secret=SECRET, signed_at=None):
    return post(site, body, P.signed_headers(secret, body, key, signed_at))


def rows(site, table):
    with site.engine.connect() as c:
        return c.execute(sa.select(table)).all()


def refusals(site):
    return [r.result for r in rows(site, audit) if r.action == "payment" and r.result.startswith("refused")]


def test_attack_payments_a_genuine_delivery_is_recorded_with_its_own_credit_key(site):
    status, answer = deliver(site, body_of())
    assert status == 200 and answer["status"] == "pending"     # no head-end here: not sent
    (p,) = rows(site, payments)
    assert (p.meter, p.amount, p.topup_account, p.topup_seq) == ("M1", 1000 * 1000, 1, 1)
    (t,) = rows(site, topups)
    assert (t.meter, t.account, t.seq, t.amount, t.status) == ("M1", 1, 1, 1000 * 1000, "pending")


@pytest.mark.parametrize("what, change, status, reason", [
    ("no signature", lambda b, h: h.pop(P.SIGNATURE_HEADER), 401, "missing"),
    ("signed with another secret", lambda b, h: h.update(P.signed_headers(b"guess", b, "dlv_1")), 401,
     "bad signature"),
    ("amount raised after signing", lambda b, h: b.replace(b'"amount": 1000', b'"amount": 9000'), 401,
     "bad signature"),
    ("timestamp moved after signing", lambda b, h: h.update({P.TIMESTAMP_HEADER: str(int(time.time()) + 1)}),
     401, "bad signature"),
    ("no idempotency key", lambda b, h: h.pop(P.IDEMPOTENCY_HEADER), 400, "Idempotency-Key"),
])
def test_attack_payments_a_forged_or_altered_delivery_is_refused_and_audited(site, what, change, status,
                                                                             reason):
    body = body_of()
    headers = P.signed_headers(SECRET, body, "dlv_1")
    changed = change(body, headers)
    if isinstance(changed, bytes):
        body = changed
    got, answer = post(site, body, headers)
    assert got == status and reason in answer["error"], (what, answer)
    assert rows(site, payments) == [] and rows(site, topups) == [], what
    assert any(reason in r for r in refusals(site)), what


def test_attack_payments_a_replayed_delivery_is_stale_or_a_duplicate(site):
    body = body_of()
    # a capture replayed later than the tolerance: refused however well signed
    old = time.time() - P.TOLERANCE_S - 5
    status, answer = deliver(site, body, signed_at=old)
    assert status == 401 and "stale timestamp" in answer["error"]
    status, answer = deliver(site, body, signed_at=time.time() + P.TOLERANCE_S + 5)
    assert status == 401 and "stale timestamp" in answer["error"]
    # a replay within the tolerance is the same delivery: acknowledged, nothing new
    assert deliver(site, body)[0] == 200
    status, answer = deliver(site, body)
    assert status == 200 and answer["duplicate"] is True
    # the provider re-sends the same payment under a new key: still one payment
    status, answer = deliver(site, body, key="dlv_2")
    assert status == 200 and answer["duplicate"] is True
    assert len(rows(site, payments)) == 1 and len(rows(site, topups)) == 1
    assert sum("stale" in r for r in refusals(site)) == 2


def test_attack_payments_a_key_or_ref_reused_for_another_payment_is_a_conflict(site):
    assert deliver(site, body_of())[0] == 200
    status, answer = deliver(site, body_of(minor=5000, ref="pay_2"))          # same key, new payment
    assert status == 409 and "idempotency key" in answer["error"]
    status, answer = deliver(site, body_of(meter="M2"), key="dlv_2")          # same ref, other meter
    assert status == 409 and "ref" in answer["error"]
    (p,) = rows(site, payments)
    assert (p.meter, p.amount) == ("M1", 1000 * 1000)


@pytest.mark.parametrize("body, status, reason", [
    (body_of(meter="NOSUCH"), 422, "unknown meter"),
    (body_of(minor=99), 422, "amount out of range"),
    (body_of(minor=50_001), 422, "amount out of range"),
    (body_of(minor=-1000), 422, "amount out of range"),
    (body_of(minor="10.00"), 400, "integer"),
    (body_of(minor=10.0), 400, "integer"),
    (body_of(currency="USD"), 422, "currency"),
    (body_of(meter="M1/../M2"), 400, "meter number"),
    (b"not json", 400, "not JSON"),
    (body_of(pad="x" * 5000), 413, "body over 4096 bytes"),
    (json.dumps({"type": "payment.refunded", "ref": "x"}).encode(), 400, "payment.succeeded"),
])
def test_attack_payments_a_signed_but_invalid_payment_is_refused_with_its_reason(site, body, status, reason):
    got, answer = deliver(site, body)
    assert got == status and reason in answer["error"], answer
    assert rows(site, payments) == []
    assert any(reason in r for r in refusals(site))


def test_attack_payments_the_webhook_needs_no_csrf_token_but_the_customer_form_does(site):
    # the console refuses a POST without a CSRF token everywhere else ...
    req = urllib.request.Request(site.url + "/pay", data=b"meter=M1&amount=10", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    # ... the webhook's authentication is its signature instead
    assert deliver(site, body_of())[0] == 200


def test_attack_payments_concurrent_deliveries_of_one_payment_make_one_credit_key(site, store_url):
    # eight deliveries at once, through four console processes' worth of
    # Payments services (each its own engine and lock): only the database's
    # uniqueness can keep them to one payment
    services = [P.Payments(store.open_store(store_url), None, SECRET) for _ in range(4)]
    body = body_of(ref="pay_race")
    go = threading.Barrier(8)
    answers = []

    def one(i):
        headers = P.signed_headers(SECRET, body, f"dlv_race_{i % 2}")
        go.wait()
        answers.append(services[i % 4].receive(headers, body))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [s for s, _ in answers] == [200] * 8, answers
    assert sum(not a.get("duplicate") for _, a in answers) == 1
    assert len({a["payment"] for _, a in answers}) == 1
    assert len(rows(site, payments)) == 1 and len(rows(site, topups)) == 1
    for s in services:
        s.engine.dispose()


def test_attack_payments_the_database_itself_refuses_a_second_row_for_a_payment(site):
    assert deliver(site, body_of())[0] == 200
    (p,) = rows(site, payments)
    now = time.time()
    twin = {"meter": "M1", "amount": p.amount, "status": "pending", "created": now, "updated": now}
    for clash in ({"provider_ref": p.provider_ref, "idempotency_key": "other"},
                  {"provider_ref": "other", "idempotency_key": p.idempotency_key},
                  {"provider_ref": "o2", "idempotency_key": "o2", "topup_account": 1, "topup_seq": 1}):
        with pytest.raises(IntegrityError), site.engine.begin() as c:
            c.execute(payments.insert().values(**twin, **clash))
