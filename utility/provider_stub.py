"""A stand-in payment provider for the tests and `make sim`: it plays the
provider's side of docs/HEADEND.md §Online top-up, so a real provider's
adapter has to do the same and no more.

    app = create_provider(webhook_url, secret)      # a WSGI app (waitress serves it);
                                                    # app.config["WEBHOOK_URL"] may be set later
    GET  /checkout?meter=&amount=&currency=&return=   the hosted checkout page ("Pay")
    POST /checkout                  takes the "money", signs and delivers the webhook,
                                    sends the customer to return?ref=REF
    POST /refunds                   the utility's signed refund request -> {"status": "refunded"}
    GET  /refunds                   the refunds made (JSON), for tests

    app.deliver(meter, minor, ref=None, key=None)   one signed delivery from Python: (status, JSON)

Nothing is charged: this provider exists only in tests and the simulator.
"""

import html
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request

from utility import payments as P


def create_provider(webhook_url, secret: bytes, currency="EUR"):
    app = Flask(__name__)
    app.config["WEBHOOK_URL"] = webhook_url
    lock = threading.Lock()
    refunds = []             # what the utility asked back, in order
    refund_requests = []     # every signed refund request's ref, repeats too

    def deliver(meter, minor, ref=None, key=None, signed_at=None, sign_with=None):
        """POST one payment.succeeded to the webhook: (HTTP status, answer)."""
        ref = ref or "pay_" + secrets.token_hex(8)
        body = json.dumps({"type": "payment.succeeded", "ref": ref, "meter": meter, "amount": minor,
                           "currency": currency}, separators=(",", ":")).encode()
        headers = P.signed_headers(sign_with or secret, body, key or "dlv_" + secrets.token_hex(8),
                                   signed_at)
        req = urllib.request.Request(app.config["WEBHOOK_URL"], data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    @app.get("/checkout")
    def checkout():
        a = request.args
        try:
            minor = int(a.get("amount", ""))
        except ValueError:
            return "amount must be an integer of minor units", 400
        fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(a.get(k, ""))}">'
                         for k in ("meter", "amount", "currency", "return"))
        return (f"<!doctype html><title>Test payment provider</title><h1>Test payment provider</h1>"
                f"<p>Pay <b id=amount>{minor // 100}.{minor % 100:02d} {html.escape(a.get('currency', ''))}"
                f"</b> for water meter <b id=meter>{html.escape(a.get('meter', ''))}</b>?</p>"
                f'<form method=post action="/checkout">{fields}<button id=pay>Pay</button></form>'
                f"<p>No money moves: this provider is the project's test stand-in.</p>")

    @app.post("/checkout")
    def pay():
        f = request.form
        ref = "pay_" + secrets.token_hex(8)
        status, answer = deliver(f["meter"], int(f["amount"]), ref=ref)
        if status != 200:
            return (f"<!doctype html><title>Payment failed</title><p id=error>The utility refused the "
                    f"payment: {html.escape(answer.get('error', str(status)))}</p>"), 502
        sep = "&" if "?" in f["return"] else "?"
        return redirect(f"{f['return']}{sep}{urlencode({'ref': ref})}")

    @app.post("/refunds")
    def refund():
        body = request.get_data()
        try:
            P.verify(secret, request.headers, body, time.time())
            doc = json.loads(body)
        except P.Rejected as e:
            return jsonify(error=e.reason), e.status
        with lock:
            refund_requests.append(doc["ref"])
            if not any(r["ref"] == doc["ref"] for r in refunds):       # idempotent by ref
                refunds.append({"ref": doc["ref"], "amount": doc["amount"], "at": time.time()})
        return jsonify(status="refunded", ref=doc["ref"])

    @app.get("/refunds")
    def refund_list():
        with lock:
            return jsonify(list(refunds))

    app.deliver = deliver
    app.refunds = refunds
    app.refund_requests = refund_requests
    return app
