"""Online top-up on the console (docs/HEADEND.md §Online top-up): the
provider's webhook, the customer's page, and the operators' payments page.

    POST /payments/webhook       the provider's signed delivery (no CSRF token: the
                                 HMAC signature is its authentication)
    GET/POST /pay                the customer: meter number and amount, then off to
                                 the provider's checkout
    GET /pay/done?ref=REF        the confirmation: the payment's status, refreshed
    GET /payments                operators and viewers: every payment and its state
    POST /payments/ID/refund     operators: void the refused credit, refund the payment
    POST /payments/ID/resend     operators: send an open payment's top-up again

Configuration (create_app(..., PAYMENT_SECRET=...)): PAYMENT_SECRET (the
shared secret, bytes or text; without it the webhook answers 503),
PAYMENT_CHECKOUT_URL (the provider's hosted checkout), PAYMENT_REFUND_URL,
PAYMENT_CURRENCY, PAYMENT_MIN / PAYMENT_MAX (minor units), PAYMENT_ACCOUNT,
PAYMENT_RETRY_S (seconds between re-sends of open payments; 0: none).
"""

import logging
import threading
import time
from urllib.parse import urlencode

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired

from utility import money
from utility import payments as P

from . import store
from .auth import operator_required

bp = Blueprint("pay", __name__)
log = logging.getLogger(__name__)

DEFAULTS = {"PAYMENT_SECRET": None, "PAYMENT_CHECKOUT_URL": None, "PAYMENT_REFUND_URL": None,
            "PAYMENT_CURRENCY": "EUR", "PAYMENT_MIN": 100, "PAYMENT_MAX": 50_000,
            "PAYMENT_ACCOUNT": 1, "PAYMENT_RETRY_S": 60.0}


def init_app(app):
    """Register the blueprint and, given a secret, the Payments service. With
    a head-end its top-ups are sent (and open ones re-sent every
    PAYMENT_RETRY_S); a read-only console records payments as pending for
    a console that has one. The webhook is exempt from CSRF."""
    for k, v in DEFAULTS.items():
        app.config.setdefault(k, v)
    secret = app.config["PAYMENT_SECRET"]
    he = app.extensions.get("headend")
    if secret:
        pay = P.Payments(app.extensions["store"], he, secret.encode() if isinstance(secret, str) else secret,
                         refund_url=app.config["PAYMENT_REFUND_URL"], currency=app.config["PAYMENT_CURRENCY"],
                         min_minor=app.config["PAYMENT_MIN"], max_minor=app.config["PAYMENT_MAX"],
                         account=app.config["PAYMENT_ACCOUNT"])
        app.extensions["payments"] = pay
        if he is not None and app.config["PAYMENT_RETRY_S"]:
            _resender(pay, app.config["PAYMENT_RETRY_S"])
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(webhook)


def _resender(pay, every):
    # open payments go out again: a meter the broker lost a command for, or
    # a payment that came while the head-end had no broker
    def loop():            # a daemon: it lives as long as the console's process
        while True:
            time.sleep(every)
            try:
                pay.retry(older_than=every)
            except Exception as e:  # noqa: BLE001 - the next round tries again
                log.warning("payments retry: %r", e)
    threading.Thread(target=loop, name="payments-retry", daemon=True).start()


def payments():
    pay = current_app.extensions.get("payments")
    if pay is None:
        abort(503, "online payments are not configured on this console")
    return pay


@bp.post("/payments/webhook")
def webhook():
    pay = current_app.extensions.get("payments")
    if pay is None:
        return jsonify(error="online payments are not configured"), 503
    # never more than MAX_BODY + 1 bytes read into memory, whatever the
    # client announces; receive() refuses the oversize one with its reason
    status, answer = pay.receive(request.headers, request.stream.read(P.MAX_BODY + 1))
    return jsonify(answer), status


class PayForm(FlaskForm):
    meter = StringField("Meter number", validators=[DataRequired()])
    amount = StringField("Amount", validators=[DataRequired()])


def minor_units(text):
    """'10', '10.5' -> 1000, 1050 (utility.money's parse); None if it is not
    an amount of whole minor units."""
    try:
        units = money.parse(text)
    except ValueError:
        return None
    return units // P.UNITS_PER_MINOR if units % P.UNITS_PER_MINOR == 0 else None


@bp.route("/pay", methods=["GET", "POST"])
def pay_form():
    form = PayForm()
    cfg = current_app.config
    if form.validate_on_submit():
        meter, minor = form.meter.data.strip(), minor_units(form.amount.data)
        if minor is None or not cfg["PAYMENT_MIN"] <= minor <= cfg["PAYMENT_MAX"]:
            flash(f"Enter an amount from {_money(cfg['PAYMENT_MIN'])} to {_money(cfg['PAYMENT_MAX'])}.", "error")
        elif not _meter_exists(meter):
            flash(f"There is no meter number {meter}: check the number on the meter's label.", "error")
        elif not cfg["PAYMENT_CHECKOUT_URL"]:
            flash("Online payment is not available at the moment.", "error")
        else:
            # the provider takes the money on its own page, then signs a
            # webhook to us and sends the customer back to the confirmation
            query = urlencode({"meter": meter, "amount": minor, "currency": cfg["PAYMENT_CURRENCY"],
                               "return": url_for("pay.done", _external=True)})
            return redirect(f"{cfg['PAYMENT_CHECKOUT_URL']}?{query}")
    return render_template("pay_form.html", form=form, currency=cfg["PAYMENT_CURRENCY"],
                           low=_money(cfg["PAYMENT_MIN"]), high=_money(cfg["PAYMENT_MAX"]))


@bp.get("/pay/done")
def done():
    ref = request.args.get("ref", "")
    p = payments().status(ref=ref) if ref else None
    return render_template("pay_done.html", p=p, ref=ref,
                           final=p is not None and p["status"] in P.FINAL + ("refund_due", "refunding"))


@bp.get("/payments")
def listing():
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    return render_template("payments.html", rows=payments().listing())


@bp.post("/payments/<int:pid>/refund")
@operator_required
def refund(pid):
    try:
        st = payments().refund(pid, current_user.name)
        flash(f"Payment {pid}: {st}.", "ok")
    except P.RefundError as e:
        flash(f"Payment {pid}: {e}", "error")
    return redirect(url_for("pay.listing"))


@bp.post("/payments/<int:pid>/resend")
@operator_required
def resend(pid):
    sent = payments().send(pid)
    flash(f"Payment {pid}: {'sent again' if sent else 'not open, or no broker'}.", "ok" if sent else "error")
    return redirect(url_for("pay.listing"))


def _meter_exists(meter):
    import sqlalchemy as sa

    from utility.schema import meters
    with store().connect() as c:
        return c.execute(sa.select(meters.c.id).where(meters.c.id == meter)).first() is not None


def _money(minor):
    return money.fmt(minor * P.UNITS_PER_MINOR)

