"""Online top-up end to end (docs/HEADEND.md §Online top-up): the test-side
provider signs webhooks to the console (waitress), whose Payments send the
top-up through the HeadEnd, a real Mosquitto (TLS, ACL) and meter firmware
in the unix port; on SQLite and on PostgreSQL."""

import threading
import urllib.request

import pytest
import sqlalchemy as sa
from conftest import World, _need_mosquitto, wait_for
from paykit import SECRET, Served, Session, console, form_post

from utility import store
from utility.provider_stub import create_provider
from utility.schema import ledger, payments, topups

USED, OVER_LIMIT, VOIDED = 1, 6, 21
METERS = {"P1": 1, "P2": 1, "P3": 1}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    _need_mosquitto()
    tmp = tmp_path_factory.mktemp("pay")
    url = (f"sqlite:///{tmp / 'store.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_server").new_database())
    w = World(tmp, METERS, db=url).start()
    provider = create_provider(None, SECRET)
    w.provider_site = Served(provider)
    w.provider = provider
    w.app = console(url, w.he, w.provider_site.url)
    w.site = Served(w.app)
    provider.config["WEBHOOK_URL"] = w.site.url + "/payments/webhook"
    w.pay = w.app.extensions["payments"]
    w.engine = store.open_store(url)
    from utility.web.auth import add_user
    add_user(w.engine, "op", "operator's password", "operator")
    add_user(w.engine, "vi", "viewer's password", "viewer")
    w.p1 = w.start_meter("P1")
    w.p2 = w.start_meter("P2")
    for m in (w.p1, w.p2):
        m.wait(lambda s: s["connected"], what="meter connected")
    yield w
    w.site.close()
    w.provider_site.close()
    w.engine.dispose()
    w.close()


def balance(world, meter):
    return world.he.get(meter, "state")["detail"]["bal"]


def settle(world, pid, want, timeout=30):
    return wait_for(lambda: world.pay.status(pid)["status"] == want and world.pay.status(pid),
                    timeout, f"payment {pid} {want} (now {world.pay.status(pid)['status']})")


def page(world, path):
    with urllib.request.urlopen(world.site.url + path, timeout=10) as r:
        return r.read().decode()


def login(world, name, password):
    s = Session(world.site.url)
    assert s.post("/login", {"name": name, "password": password})[0] == 302
    return s


def test_a_payment_becomes_one_credit_settled_when_the_meter_acks(world):
    before = balance(world, "P1")
    status, answer = world.provider.deliver("P1", 1250, ref="pay_settle")
    assert status == 200 and answer["status"] in ("sent", "settled")
    p = settle(world, answer["payment"], "settled")
    assert p["amount"] == 1_250_000 and p["code"] == 0
    world.p1.wait(lambda s: s["bal"] == before + 1_250_000, what="credit on the meter")
    assert "the meter has applied the credit" in page(world, "/pay/done?ref=pay_settle")


def test_a_payment_delivered_many_times_and_resent_credits_the_meter_once(world):
    before = balance(world, "P1")
    answers = []
    go = threading.Barrier(6)

    def one(i):
        go.wait()
        # the provider's retries (one key) and a re-send under a new key (same ref)
        answers.append(world.provider.deliver("P1", 2000, ref="pay_twice", key=f"dlv_twice_{i % 3}"))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [s for s, _ in answers] == [200] * 6, answers
    pids = {a["payment"] for _, a in answers}
    assert len(pids) == 1, f"one payment delivered 6 times became {len(pids)} payments"
    (pid,) = pids
    settle(world, pid, "settled")
    # and the console sends it again (a lost ack, an operator's "send again")
    assert world.pay.retry() == 0, "a settled payment is not open: not re-sent"
    row = world.pay.status(pid)
    again = world.he.topup("P1", row["amount"], row["topup_account"], row["topup_seq"], timeout=15)
    assert again["code"] == USED, again
    assert balance(world, "P1") == before + 2_000_000
    with world.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(payments).where(
            payments.c.provider_ref == "pay_twice")).scalar() == 1
        keys = c.execute(sa.select(topups.c.seq).where(topups.c.meter == "P1",
                                                       topups.c.amount == 2_000_000)).scalars().all()
    assert keys == [row["topup_seq"]]


def test_a_refused_credit_is_shown_voided_and_refunded_never_lost(world):
    assert world.he.configure("P2", "max_topup", 500_000)["code"] == 0     # 5.00 at most
    before = balance(world, "P2")
    status, answer = world.provider.deliver("P2", 1000, ref="pay_refused")      # 10.00
    assert status == 200
    pid = answer["payment"]
    p = settle(world, pid, "refund_due")
    assert p["code"] == OVER_LIMIT
    done = page(world, "/pay/done?ref=pay_refused")
    assert "the meter refused the credit" in done and f"code {OVER_LIMIT}" in done
    assert world.pay.retry() == 0, "a refused payment is not sent again"
    # a viewer may not refund; the operator's Refund voids the key, then the provider pays back
    viewer = login(world, "vi", "viewer's password")
    assert viewer.post(f"/payments/{pid}/refund", {}, form_at="/payments")[0] == 403
    assert world.pay.status(pid)["status"] == "refund_due"
    operator = login(world, "op", "operator's password")
    status, _, where = operator.post(f"/payments/{pid}/refund", {}, form_at="/payments")
    assert status == 302 and where.endswith("/payments")
    assert f"Payment {pid}: refunded." in operator.get("/payments")[1]
    assert world.pay.status(pid)["status"] == "refunded"
    assert [r["ref"] for r in world.provider.refunds] == ["pay_refused"]
    assert world.provider.refunds[0]["amount"] == 1000
    with world.engine.connect() as c:
        assert c.execute(sa.select(ledger.c.amount).where(
            ledger.c.source == "refund", ledger.c.ref == str(pid))).scalars().all() == [1_000_000]
    # refunded money never arrives as credit too: the key is void on the
    # meter, even once the limit would let it in
    assert world.he.configure("P2", "max_topup", 100_000_000)["code"] == 0
    row = world.pay.status(pid)
    late = world.he.topup("P2", row["amount"], row["topup_account"], row["topup_seq"], timeout=15)
    assert late["code"] == VOIDED, late
    assert balance(world, "P2") == before
    assert "has been refunded" in page(world, "/pay/done?ref=pay_refused")


def test_two_operators_refunding_one_payment_at_once_refund_it_once(world):
    """Two clicks on Refund at once (two operators, a double click): both
    read refund_due, both voided and both asked the provider, and the
    second failed in the ledger's key (IntegrityError, a 500). The refund
    is claimed by one conditional UPDATE first: one refund, one request to
    the provider, the other click refused with its reason."""
    assert world.he.configure("P1", "max_topup", 500_000)["code"] == 0
    try:
        status, answer = world.provider.deliver("P1", 1000, ref="pay_two_clicks")
        assert status == 200, answer
        pid = answer["payment"]
        settle(world, pid, "refund_due")
        start, out = threading.Barrier(2), []

        def click():
            start.wait()
            try:
                out.append(world.pay.refund(pid, "op"))
            except Exception as e:  # noqa: BLE001 - which one, the test says
                out.append(e)
        clicks = [threading.Thread(target=click) for _ in range(2)]
        for t in clicks:
            t.start()
        for t in clicks:
            t.join(60)
        assert "refunded" in out and len(out) == 2, out
        (other,) = [x for x in out if x != "refunded"]
        assert type(other).__name__ == "RefundError", repr(other)
        assert world.provider.refund_requests.count("pay_two_clicks") == 1
        assert world.pay.status(pid)["status"] == "refunded"
        with world.engine.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(ledger).where(
                ledger.c.source == "refund", ledger.c.ref == str(pid))).scalar() == 1
    finally:
        assert world.he.configure("P1", "max_topup", 100_000_000)["code"] == 0


def test_an_offline_meter_gets_the_payment_when_it_connects(world):
    p3 = world.start_meter("P3")
    p3.wait(lambda s: s["connected"], what="P3's first connection (its broker session)")
    before = balance(world, "P3")
    p3.stop()
    wait_for(lambda: {m["id"]: m["online"] for m in world.he.meters()}["P3"] == 0, 20, "P3 offline")
    status, answer = world.provider.deliver("P3", 700, ref="pay_offline")
    assert status == 200 and answer["status"] == "sent"
    assert world.pay.retry() == 0, "no second copy queued for an offline meter"
    assert world.pay.status(answer["payment"])["status"] == "sent"
    p3 = world.start_meter("P3")
    settle(world, answer["payment"], "settled", timeout=40)
    p3.wait(lambda s: s["bal"] == before + 700_000, what="the credit after reconnecting")
    p3.stop()


def test_the_customer_page_refuses_an_unknown_meter_and_a_bad_amount(world):
    html = page(world, "/pay")
    assert 'name="csrf_token"' in html and "Meter number" in html
    for meter, amount, why in (("NOSUCH", "10", "There is no meter number NOSUCH"),
                               ("P1", "0.50", "Enter an amount from 1.00 to 500.00"),
                               ("P1", "ten", "Enter an amount from 1.00 to 500.00"),
                               ("P1", "10.005", "Enter an amount from 1.00 to 500.00")):
        status, body, _ = form_post(world.site.url, "/pay", {"meter": meter, "amount": amount})
        assert status == 200 and why in body, (meter, amount)
    status, _, location = form_post(world.site.url, "/pay", {"meter": "P1", "amount": "12.50"})
    assert status == 302 and location.startswith(world.provider_site.url + "/checkout?")
    assert "amount=1250" in location and "meter=P1" in location
