"""The console's actions: top-up, valve, configuration, tariff publish (now
or scheduled, to a region or one meter). Each one is operator-only, goes
through the HeadEnd API, waits for the meter's ack where there is one, and
leaves an audit row with its result. Bad input is refused with its reason
(HTTP 400) and audited too."""

import calendar
import itertools
import json
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from utility import money
from utility import schema as st

from . import audit, headend, need_login, now, queries, store
from .auth import operator_required

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from headend import HeadEndError  # tools/ is not a package

bp = need_login(Blueprint("actions", __name__))
MAX_TOPUP = 2_000_000_000      # money units: the top of max_topup's range (PROTOCOL.md §4.5)


class Refused(ValueError):
    """Bad input of an action: shown to the operator, audited, HTTP 400."""


def _act(action, target, detail, fn):
    """Run fn() -> (category, message) under an audit row; flash the message."""
    if headend() is None:
        audit.record(current_user.name, action, target, "refused: console is read-only", detail)
        abort(409, "this console is read-only (no head-end connection)")
    with audit.audited(current_user.name, action, target, detail) as out:
        try:
            category, msg = fn()
        except HeadEndError as e:
            category, msg = "error", str(e)
        out.result = msg
    flash(f"{action} {target}: {msg}", category)


def _ack_text(a):
    return f"{a['result']} (code {a['code']}), value {a['val']}"


def _send(action, meter, detail, call, text=_ack_text):
    """An audited command: call(timeout) -> the meter's ack, shown by text(ack)."""
    def run():
        a = call(current_app.config["ACK_TIMEOUT"])
        return ("ok" if a["code"] in (0, 1) else "error"), text(a)
    _act(action, meter, detail, run)
    return redirect(url_for("views.meter", meter=meter))


def _refuse(action, target, why):
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    audit.record(current_user.name, action, target, f"refused: {why}", form)
    flash(f"{action} {target}: {why}", "error")
    return render_template("refused.html", why=why), 400


def _known(meter):
    with store().connect() as c:
        if queries.meter(c, meter) is None:
            abort(404)


@bp.post("/meters/<meter>/topup")
@operator_required
def topup(meter):
    _known(meter)
    try:
        amount = money.parse(request.form.get("amount", ""))
        account = int(request.form.get("account") or 1)
        if amount <= 0:
            raise Refused("the amount must be above 0")
        # what any meter takes (max_topup, account u32: PROTOCOL.md 4.4, 4.5);
        # a number past 64 bits failed in the store with a 500
        if amount > MAX_TOPUP:
            raise Refused(f"the amount is at most {money.fmt(MAX_TOPUP)} (the largest a meter takes)")
        if not 0 <= account < 1 << 32:
            raise Refused("the account is 0 .. 2^32-1")
    except ValueError as e:
        return _refuse("topup", meter, str(e))
    return _send("topup", meter, {"amount": amount, "account": account},
                 lambda t: headend().topup(meter, amount, account, timeout=t),
                 lambda a: f"{money.fmt(amount)} (seq {a['seq']}): {_ack_text(a)}")


@bp.post("/meters/<meter>/valve")
@operator_required
def valve(meter):
    _known(meter)
    op = request.form.get("action")
    if op not in ("open", "close"):
        return _refuse("valve", meter, "action is open or close")
    override = request.form.get("override") == "1"
    return _send("valve", meter, {"action": op, "override": override},
                 lambda t: headend().valve(meter, op == "open", override, timeout=t))


@bp.post("/meters/<meter>/config")
@operator_required
def configure(meter):
    _known(meter)
    key = request.form.get("key", "").strip()
    try:
        value = json.loads(request.form.get("value", ""))
    except ValueError:
        return _refuse("config", meter, "the value must be JSON, e.g. 900 or [20, 8] or \"auto\"")
    if not key:
        return _refuse("config", meter, "a setting needs its key")
    return _send("config", meter, {"key": key, "value": value},
                 lambda t: headend().configure(meter, key, value, timeout=t))


@bp.post("/meters/<meter>/history")
@operator_required
def fetch_history(meter):
    """Page the meter's frozen daily and monthly registers into the store
    (the charts and the charged revenue come from them)."""
    _known(meter)

    def run():
        t = current_app.config["ACK_TIMEOUT"]
        new = {k: headend().fetch_history(meter, k, timeout=t) for k in ("d", "m")}
        return "ok", f"{new['d']} new daily, {new['m']} new monthly records"
    _act("history", meter, None, run)
    return redirect(url_for("views.meter", meter=meter))


@bp.post("/meters/<meter>/building")
@operator_required
def building(meter):
    """Where the meter is installed (the regions page sums per building).
    A store edit, not a command: allowed on a read-only console too."""
    _known(meter)
    name = request.form.get("building", "").strip()
    if len(name) > 64:
        return _refuse("building", meter, "a building name is at most 64 characters")
    with store().begin() as c:
        c.execute(st.meters.update().where(st.meters.c.id == meter).values(building=name or None))
    audit.record(current_user.name, "building", meter, "ok", {"building": name or None})
    flash(f"building {meter}: {name or 'none'}", "ok")
    return redirect(url_for("views.meter", meter=meter))


# ---------------- tariffs ----------------
def _utc(text):
    """"2026-12-01T21:30" (a datetime-local field, read as UTC) -> Unix s."""
    try:
        return calendar.timegm(time.strptime(text.strip(), "%Y-%m-%dT%H:%M"))
    except ValueError:
        raise Refused(f"not a time (YYYY-MM-DDTHH:MM, UTC): {text!r}") from None


def tariff_from_form(form):
    """The wire tariff (docs/PROTOCOL.md §4.3) from the form: blocks as
    lines "UPTO_LITRES:PRICE" with the price in currency per m³ (0 litres:
    unbounded, last), the standing charge in currency per day."""
    try:
        version = int(form.get("version", ""))
    except ValueError:
        raise Refused("the version is a whole number") from None
    if not 1 <= version < 1 << 31:
        raise Refused("the version is 1 .. 2^31-1")
    blocks = []
    for line in form.get("blocks", "").replace(",", "\n").splitlines():
        if not line.strip():
            continue
        upto, _, price = line.partition(":")
        try:
            blocks.append([int(upto), money.parse(price)])
        except ValueError:
            raise Refused(f"bad block {line.strip()!r}: want UPTO_LITRES:PRICE") from None
    if not 1 <= len(blocks) <= 8 or blocks[-1][0] != 0:
        raise Refused("1 to 8 blocks, the last one unbounded (0 litres)")
    if any(b[0] <= a[0] for a, b in itertools.pairwise(blocks[:-1])) or blocks[0][0] < 0:
        raise Refused("block limits must increase")
    try:
        standing = money.parse(form.get("standing") or "0")
    except ValueError as e:
        raise Refused(str(e)) from None
    at = _utc(form["at"]) if form.get("at") else 0
    return {"v": version, "at": at, "b": blocks, "sc": standing}


@bp.get("/tariffs")
def tariffs():
    t = st.scheduled_tariffs
    with store().connect() as c:
        rows = c.execute(sa.select(t).order_by(t.c.due.desc()).limit(200)).all()
    return render_template("tariffs.html", rows=rows, can_act=headend() is not None)


@bp.post("/tariffs")
@operator_required
def schedule_tariff():
    """Stores the tariff in scheduled_tariffs; due now: published at once
    (the scheduler's own path), later: by the scheduler when due."""
    form = request.form
    scope = form.get("scope")
    target = form.get("target", "").strip()
    try:
        tariff = tariff_from_form(form)
        if scope == "region":
            region, meter = int(target), None
            if not 0 <= region < 1 << 16:
                raise Refused("a region is 0 .. 65535")
        elif scope == "meter":
            region, meter = None, target
            _known(meter)
        else:
            raise Refused("scope is region or meter")
        due = _utc(form["due"]) if form.get("due") else now()
    except ValueError as e:
        return _refuse("tariff", target, str(e))
    if headend() is None:
        return _refuse("tariff", target, "console is read-only")
    with store().begin() as c:
        row_id = c.execute(st.scheduled_tariffs.insert().values(
            region=region, meter=meter, version=tariff["v"], body=tariff, due=due,
            status="pending", by_user=current_user.name)).inserted_primary_key[0]
    audit.record(current_user.name, "tariff.schedule", target,
                 f"scheduled #{row_id} for {time.strftime('%Y-%m-%d %H:%M', time.gmtime(due))} UTC",
                 tariff)
    from .schedule import publish_due
    if due <= now():
        for _, result in publish_due(current_app, only=row_id):
            flash(f"tariff v{tariff['v']} to {scope} {target}: {result}", "ok")
    else:
        flash(f"tariff v{tariff['v']} to {scope} {target}: scheduled (#{row_id})", "ok")
    return redirect(url_for("actions.tariffs"))


@bp.post("/tariffs/<int:row_id>/cancel")
@operator_required
def cancel_tariff(row_id):
    t = st.scheduled_tariffs
    with store().begin() as c:
        n = c.execute(t.update().where(t.c.id == row_id, t.c.status == "pending")
                      .values(status="cancelled", result=f"cancelled by {current_user.name}")).rowcount
    result = "cancelled" if n else "refused: not pending"
    audit.record(current_user.name, "tariff.cancel", f"#{row_id}", result)
    flash(f"scheduled tariff #{row_id}: {result}", "ok" if n else "error")
    return redirect(url_for("actions.tariffs"))
