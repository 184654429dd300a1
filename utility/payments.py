"""Online top-up: a payment provider's webhook becomes exactly one signed
top-up to the meter (docs/HEADEND.md §Online top-up is the contract).

    pay = Payments(engine, headend, secret=b"...", refund_url="https://psp/refunds")
    status, answer = pay.receive(headers, body)     # the webhook, from any web framework
    pay.refund(payment_id, "operator name")         # a refused credit: void, then money back

Exactly once rests on the database, not on a lookup: the payments row is
unique by the provider's reference and by the delivery's idempotency key,
and the same transaction gives the payment its own ledger key (account, seq)
in `topups`, so however often the top-up is sent again the meter applies it
once (PROTOCOL.md §4.4 "Top-up exactly once"). A credit the meter refuses is
`refund_due` until its key is voided on the meter (office-signed, so it can
never apply later) and the provider has paid the money back: `refunded`.

Payment states: pending (recorded with its key, not yet published) -> sent
(published; the broker holds it for an offline meter) -> settled (the meter
acknowledged it applied) | refund_due (the meter refused it: topups.code
says why) -> refunding (an operator's refund under way: voiding the key,
asking the provider) -> refunded, or back to refund_due if a step failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import urllib.request

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from utility.schema import audit, ledger, meters, payments, topups

TIMESTAMP_HEADER = "X-Payment-Timestamp"
SIGNATURE_HEADER = "X-Payment-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300            # a delivery signed longer ago (or ahead) than this is stale
MAX_BODY = 4096
REFUND_CLAIM_S = 600         # a refund claim this old (a crash mid-refund) may be taken again
AUDITS_PER_MINUTE = 30       # audit rows of refused or duplicate deliveries (Payments._audit_limited)
UNITS_PER_MINOR = 1000       # money units per minor currency unit (docs/METERING.md)
_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_METER = re.compile(r"[A-Za-z0-9_-]{1,16}\Z")       # the meter's own id rule (PROTOCOL.md §2)

# the meter's answers that say "not applied, and sending it again may work"
# (headend.py _settle keeps such a top-up pending): old counter, signature, storage
OPEN = ("pending", "sent")
FINAL = ("settled", "refunded")
STATUS_TEXT = {
    "pending": "payment received; the credit is waiting to be sent to the meter",
    "sent": "payment received; the credit is on its way to the meter (an offline meter gets it "
            "when it connects)",
    "settled": "the meter has applied the credit",
    "refund_due": "the meter refused the credit; the payment will be refunded",
    "refunding": "the meter refused the credit; the refund is under way",
    "refunded": "the meter refused the credit; the payment has been refunded",
}


class Rejected(Exception):
    """A webhook delivery refused: HTTP status and a reason for the provider."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The provider's signature of one delivery: hex HMAC-SHA256 over
    timestamp "." body, with the shared secret."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, key: str, now=None) -> dict:
    """The headers a sender (the provider, or the utility calling the
    provider's refund endpoint) puts on a body."""
    ts = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(secret, ts, body),
            IDEMPOTENCY_HEADER: key, "Content-Type": "application/json"}


def verify(secret: bytes, headers, body: bytes, now: float, tolerance=TOLERANCE_S) -> str:
    """Check one delivery's signature and freshness; its idempotency key.
    Raises Rejected. The signature is checked before anything of the body
    is read, and compared in constant time."""
    if len(body) > MAX_BODY:
        raise Rejected(413, f"body over {MAX_BODY} bytes")
    ts, sig = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not ts.isdigit() or not sig:
        raise Rejected(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    if not hmac.compare_digest(signature(secret, ts, body), sig.lower()):
        raise Rejected(401, "bad signature")
    if abs(now - int(ts)) > tolerance:
        raise Rejected(401, f"stale timestamp ({int(now) - int(ts)} s off, tolerance {tolerance} s)")
    key = headers.get(IDEMPOTENCY_HEADER, "")
    if not _KEY.match(key):
        raise Rejected(400, f"missing or malformed {IDEMPOTENCY_HEADER} (1-64 of A-Z a-z 0-9 _ . : -)")
    return key


def _json(body: bytes):
    """The body's JSON; ValueError also for nesting deeper than the
    decoder's recursion limit (4 KiB of "[" is 4096 levels: RecursionError)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _fields(body: bytes, currency: str) -> dict:
    try:
        doc = _json(body)
    except ValueError:
        raise Rejected(400, "body is not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != "payment.succeeded":
        raise Rejected(400, 'not a {"type": "payment.succeeded"} object')
    ref, meter, amount = doc.get("ref"), doc.get("meter"), doc.get("amount")
    if not isinstance(ref, str) or not _KEY.match(ref):
        raise Rejected(400, "ref must be 1-64 of A-Z a-z 0-9 _ . : -")
    if not isinstance(meter, str) or not _METER.match(meter):
        raise Rejected(400, "meter must be a meter number (1-16 letters, digits, - or _)")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise Rejected(400, "amount must be an integer number of minor currency units")
    if doc.get("currency") != currency:
        raise Rejected(422, f"currency must be {currency}")
    return {"ref": ref, "meter": meter, "minor": amount}


class Payments:
    """The payments of one store, sent through one HeadEnd. min_minor and
    max_minor bound a payment in minor currency units; account is the
    credit account of online top-ups (the meters' MQTT account)."""

    def __init__(self, engine, headend, secret: bytes, refund_url=None, currency="EUR",
                 min_minor=100, max_minor=50_000, account=1, tolerance=TOLERANCE_S, clock=time.time):
        if not secret:
            raise ValueError("payments need the provider's shared secret")
        self.engine, self.he, self.secret = engine, headend, secret
        self.refund_url, self.currency = refund_url, currency
        self.min_minor, self.max_minor = min_minor, max_minor
        self.account, self.tolerance, self.clock = account, tolerance, clock
        self._limit = threading.Lock()
        self._window, self._not_audited = [float("-inf"), 0], 0   # _audit_limited's minute
        if headend is not None:
            headend.on_ack.append(self.on_ack)

    # ---------------- the webhook ----------------
    def receive(self, headers, body: bytes):
        """One webhook delivery -> (HTTP status, JSON answer). Every refusal
        is audited with its reason."""
        try:
            key = verify(self.secret, headers, body, self.clock(), self.tolerance)
            f = _fields(body, self.currency)
            return self._accept(key, f)
        except Rejected as e:
            self._audit_limited("refused: " + e.reason, _peek(body))
            return e.status, {"error": e.reason}

    def _audit_limited(self, result, detail):
        """An audit row of a refused or duplicate delivery, at most
        AUDITS_PER_MINUTE a minute (by this process); the rest are counted
        and the next row written says how many (`not_audited`). Anyone can
        post junk, or replay a captured delivery with new idempotency keys
        (the header is not signed): a row each filled the store at their rate."""
        now = self.clock()
        with self._limit:
            if now - self._window[0] >= 60:
                self._window = [now, 0]
            self._window[1] += 1
            if self._window[1] > AUDITS_PER_MINUTE:
                self._not_audited += 1
                return
            skipped, self._not_audited = self._not_audited, 0
        self._audit(result, dict(detail, not_audited=skipped) if skipped else detail)

    def _accept(self, key, f):
        if not self.min_minor <= f["minor"] <= self.max_minor:
            raise Rejected(422, f"amount out of range ({self.min_minor}..{self.max_minor} minor units)")
        with self.engine.connect() as c:
            known = c.execute(sa.select(meters.c.id).where(meters.c.id == f["meter"])).first()
        if known is None:
            raise Rejected(422, f"unknown meter {f['meter']}")
        amount = f["minor"] * UNITS_PER_MINOR
        for _ in range(5):
            try:
                pid = self._record(key, f["ref"], f["meter"], amount)
                break
            except IntegrityError:
                # a payment already holds this ref or key, or (another process)
                # this ledger seq: which one, the rows say
                dup = self._find(key, f["ref"])
                if dup is not None:
                    return self._duplicate(dup, key, f, amount)
        else:
            raise Rejected(503, "could not record the payment (busy); deliver it again")
        self._audit("accepted", {"ref": f["ref"], "meter": f["meter"], "amount": amount,
                                 "payment": pid})
        self.send(pid)
        return 200, {"payment": pid, "status": self.status(pid)["status"]}

    def _record(self, key, ref, meter, amount):
        """The payment and its top-up record in one transaction: a payment
        exists only with its own credit key, and a key only with its payment."""
        now = self.clock()
        # a seq another writer takes meanwhile (HeadEnd.topup, another console)
        # fails this transaction on the topups key: _accept tries again
        with self.engine.begin() as c:
            pid = c.execute(payments.insert().values(
                provider_ref=ref, idempotency_key=key, meter=meter, amount=amount,
                status="pending", created=now, updated=now)).inserted_primary_key[0]
            seq = (c.execute(sa.select(sa.func.max(topups.c.seq)).where(
                topups.c.meter == meter, topups.c.account == self.account)).scalar() or 0) + 1
            c.execute(topups.insert().values(meter=meter, account=self.account, seq=seq,
                                             amount=amount, status="pending", created=now))
            c.execute(payments.update().where(payments.c.id == pid).values(
                topup_account=self.account, topup_seq=seq))
        return pid

    def _find(self, key, ref):
        with self.engine.connect() as c:
            return c.execute(sa.select(payments).where(
                sa.or_(payments.c.idempotency_key == key, payments.c.provider_ref == ref))).first()

    def _duplicate(self, row, key, f, amount):
        if (row.provider_ref, row.meter, row.amount) != (f["ref"], f["meter"], amount):
            raise Rejected(409, f"{'idempotency key' if row.idempotency_key == key else 'ref'} "
                                f"already used by payment {row.id} for another payment")
        self._audit_limited("duplicate", {"ref": f["ref"], "payment": row.id})
        return 200, {"payment": row.id, "status": self.status(row.id)["status"], "duplicate": True}

    # ---------------- to the meter and back ----------------
    def send(self, pid):
        """Publish the payment's top-up (again) under its own key; never
        waits for the ack. False when the head-end cannot publish now (it
        stays pending, for retry)."""
        row = self._row(pid)
        if row is None or row.status not in OPEN or self.he is None:
            return False
        try:
            self.he.topup(row.meter, row.amount, row.topup_account, row.topup_seq, timeout=None)
        except Exception as e:  # noqa: BLE001 - no broker now: retry() sends it later
            self._audit(f"not sent: {e}", {"payment": pid})
            return False
        with self.engine.begin() as c:
            c.execute(payments.update().where(payments.c.id == pid,
                                              payments.c.status.in_(OPEN)).values(
                status="sent", updated=self.clock()))
        self.sync(pid)      # an ack may have beaten the update
        return True

    def on_ack(self, meter, ack):
        """HeadEnd.on_ack: the ack's top-up record is settled by now."""
        if ack.get("n"):
            self.sync(meter=meter)

    def sync(self, pid=None, meter=None):
        """Move open payments to the fate of their top-up record (whoever
        ingested the ack: this process or another worker)."""
        q = (sa.select(payments.c.id, topups.c.status).select_from(payments.join(topups, sa.and_(
                topups.c.meter == payments.c.meter, topups.c.account == payments.c.topup_account,
                topups.c.seq == payments.c.topup_seq)))
             .where(payments.c.status.in_(OPEN), topups.c.status.in_(("applied", "refused"))))
        if pid is not None:
            q = q.where(payments.c.id == pid)
        if meter is not None:
            q = q.where(payments.c.meter == meter)
        with self.engine.begin() as c:
            for p, st in c.execute(q).all():
                to = "settled" if st == "applied" else "refund_due"
                c.execute(payments.update().where(payments.c.id == p,
                                                  payments.c.status.in_(OPEN)).values(
                    status=to, updated=self.clock()))

    def retry(self, older_than=0.0, meter=None):
        """Send every open payment last moved more than older_than seconds
        ago: a pending one (never published) whatever the meter's state, a
        sent one again only while its meter is online (an offline meter's
        copy waits at the broker; one per round would pile up there). Same
        key: the meter applies it once. The count sent."""
        self.sync(meter=meter)
        q = (sa.select(payments.c.id).select_from(payments.join(meters, meters.c.id == payments.c.meter))
             .where(payments.c.updated <= self.clock() - older_than,
                    sa.or_(payments.c.status == "pending",
                           sa.and_(payments.c.status == "sent", meters.c.online == 1))))
        if meter is not None:
            q = q.where(payments.c.meter == meter)
        with self.engine.connect() as c:
            ids = c.execute(q.order_by(payments.c.id)).scalars().all()
        return sum(self.send(p) for p in ids)

    # ---------------- refunds ----------------
    def refund(self, pid, user):
        """A refused credit's money back: first the office-signed void of its
        key on the meter (it can then never apply; if the meter answers that
        it HAD applied it, the payment is settled and nothing is refunded),
        then the provider's refund. Returns the new status; raises
        RefundError when a step did not complete (status back to refund_due,
        and asking again is safe: a void asked again gives the same answer).
        The refund is claimed first (refund_due -> refunding, one
        conditional UPDATE), so two operators' clicks at once make one
        refund: the other is refused. A claim a crash left behind may be
        taken again after REFUND_CLAIM_S."""
        row = self._row(pid)
        if row is None or not self._claim(pid):
            now = self._row(pid)
            if now is not None and now.status == "refunding":
                raise RefundError(f"a refund of payment {pid} is under way already")
            raise RefundError(f"payment {pid} is not due a refund ({now and now.status})")
        try:
            a = self.he.void(row.meter, row.topup_account, row.topup_seq)
        except Exception as e:  # noqa: BLE001 - no ack: the meter decides later
            self._set(pid, "refunding", "refund_due")
            self._audit(f"refund: void not confirmed: {e}", {"payment": pid}, user)
            raise RefundError(f"the meter did not confirm the void ({e}); try again") from None
        if a.get("code") == 1:          # used: it was applied after all
            self._set(pid, "refunding", "settled")
            self._audit("refund: the meter had applied it: settled", {"payment": pid}, user)
            return "settled"
        if a.get("code") != 0:
            self._set(pid, "refunding", "refund_due")
            self._audit(f"refund: void refused ({a.get('result')})", {"payment": pid}, user)
            raise RefundError(f"the meter refused the void: {a.get('result')} (code {a.get('code')})")
        try:
            self._provider_refund(row)
        except (OSError, ValueError) as e:
            self._set(pid, "refunding", "refund_due")
            self._audit(f"refund: provider failed: {e}", {"payment": pid}, user)
            raise RefundError(f"the provider did not confirm the refund: {e}") from None
        with self.engine.begin() as c:
            c.execute(payments.update().where(payments.c.id == pid,
                                              payments.c.status == "refunding").values(
                status="refunded", updated=self.clock()))
            c.execute(ledger.insert().values(meter=row.meter, source="refund", ref=str(pid),
                                             amount=row.amount, recorded=self.clock()))
        self._audit("refunded", {"payment": pid, "ref": row.provider_ref, "amount": row.amount}, user)
        return "refunded"

    def _claim(self, pid):
        """refund_due (or a claim older than REFUND_CLAIM_S) -> refunding;
        False if another refund holds it, or it is not due one."""
        now = self.clock()
        with self.engine.begin() as c:
            return c.execute(payments.update().where(payments.c.id == pid, sa.or_(
                payments.c.status == "refund_due",
                sa.and_(payments.c.status == "refunding",
                        payments.c.updated < now - REFUND_CLAIM_S))).values(
                status="refunding", updated=now)).rowcount == 1

    def _provider_refund(self, row):
        if not self.refund_url:
            raise ValueError("no refund_url configured")
        body = json.dumps({"type": "refund", "ref": row.provider_ref,
                           "amount": row.amount // UNITS_PER_MINOR,
                           "currency": self.currency}, separators=(",", ":")).encode()
        req = urllib.request.Request(self.refund_url, data=body, method="POST", headers=signed_headers(
            self.secret, body, f"refund-{row.provider_ref}", self.clock()))
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.loads(r.read() or b"{}")
        if answer.get("status") != "refunded":
            raise ValueError(f"provider answered {answer!r}")

    # ---------------- reading ----------------
    def _row(self, pid):
        with self.engine.connect() as c:
            return c.execute(sa.select(payments).where(payments.c.id == pid)).first()

    def status(self, pid=None, ref=None):
        """One payment as a dict (with the meter's result code when it
        answered), by id or provider ref; None if there is none."""
        self.sync(pid)
        q = self._listing()
        q = q.where(payments.c.id == pid) if pid is not None else q.where(payments.c.provider_ref == ref)
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return row and _as_dict(row)

    def listing(self, limit=200):
        self.sync()
        with self.engine.connect() as c:
            rows = c.execute(self._listing().order_by(payments.c.id.desc()).limit(limit)).all()
        return [_as_dict(r) for r in rows]

    @staticmethod
    def _listing():
        return sa.select(payments, topups.c.code).select_from(payments.outerjoin(topups, sa.and_(
            topups.c.meter == payments.c.meter, topups.c.account == payments.c.topup_account,
            topups.c.seq == payments.c.topup_seq)))

    def _set(self, pid, frm, to):
        with self.engine.begin() as c:
            c.execute(payments.update().where(payments.c.id == pid, payments.c.status == frm)
                      .values(status=to, updated=self.clock()))

    def _audit(self, result, detail, user="provider"):
        target = detail.get("meter") or detail.get("payment")
        with self.engine.begin() as c:
            c.execute(audit.insert().values(at=self.clock(), user=user, action="payment",
                                            target=None if target is None else str(target),
                                            detail=detail, result=result))


class RefundError(Exception):
    pass


def _peek(body):
    """What an audit row may say about a refused body: its ref, meter and
    amount if it parses, nothing else (it is not trusted)."""
    try:
        doc = _json(body)
        return {k: str(doc[k])[:64] for k in ("ref", "meter", "amount") if k in doc}
    except (ValueError, TypeError):
        return {"body_bytes": len(body)}


def _as_dict(row):
    d = dict(row._mapping)
    d["text"] = STATUS_TEXT.get(d["status"], d["status"])
    return d
