"""What the console's pages read from the store, as plain dicts and lists.
Aggregation is in SQL where both SQLite and PostgreSQL say it the same way
(GROUP BY, MIN/MAX/SUM), periods are cut in Python from Unix seconds (UTC)."""

import sys
import time
from pathlib import Path

import sqlalchemy as sa

from utility import schema as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "firmware"))
import codes  # the firmware's one table of event and result codes

# event alarms (docs/PROTOCOL.md §3.3 codes) the console shows, with their names
ALARM_EVENTS = {c: codes.event_name(c) for c in (
    codes.EV_LEAK, codes.EV_BURST, codes.EV_TAMPER, codes.EV_VALVE_FAULT, codes.EV_LOW_BATTERY,
    codes.EV_REVERSE_FLOW, codes.EV_SENSOR_FAULT, codes.EV_FLOW_WHILE_CLOSED,
    codes.EV_CREDIT_EXHAUSTED, codes.EV_STATE_CORRUPT, codes.EV_OUTBOX_OVERFLOW,
    codes.EV_COMMAND_REJECTED)}
ALARM_WINDOW_S = 7 * 86400     # an event alarm is shown for a week after it arrived


def event_name(code):
    return codes.event_name(code)


def result_name(code):
    return "-" if code is None else codes.result_name(code)


def why_name(flags):
    return codes.why_name((flags >> 1) & 15)


# ---------------- meters ----------------
def meters(conn, now, silent_s, region=None, building=None):
    """Every meter (of a region / building) with its state and alarms."""
    m = st.meters
    q = sa.select(m).order_by(m.c.id)
    if region is not None:
        q = q.where(m.c.region == region)
    if building:
        q = q.where(m.c.building == building)
    rows = conn.execute(q).all()
    alarms = meter_alarms(conn, now)
    out = []
    for r in rows:
        r = r._mapping
        silent = r["last_seen"] is None or r["last_seen"] < now - silent_s
        out.append({"id": r["id"], "region": r["region"], "building": r["building"],
                    "online": r["online"], "silent": silent, "last_seen": r["last_seen"],
                    "t": r["t"], "ml": r["ml"], "bal": r["bal"],
                    "valve": None if r["flags"] is None else r["flags"] & 1,
                    "why": None if r["flags"] is None else why_name(r["flags"]),
                    "tv": r["tv"], "alarms": alarms.get(r["id"], [])})
    return out


def meter_alarms(conn, now):
    """meter -> alarm names: its event alarms of the last week and the
    head-end's own alarms (kept until cleared)."""
    e = st.events
    out = {}
    for meter, code in conn.execute(
            sa.select(e.c.meter, e.c.code).where(e.c.code.in_(ALARM_EVENTS),
                                                 e.c.received > now - ALARM_WINDOW_S)
            .group_by(e.c.meter, e.c.code).order_by(e.c.meter, e.c.code)):
        out.setdefault(meter, []).append(ALARM_EVENTS[code])
    a = st.alarms
    for meter, kind in conn.execute(sa.select(a.c.meter, a.c.kind).group_by(a.c.meter, a.c.kind)
                                    .order_by(a.c.meter, a.c.kind)):
        out.setdefault(meter, []).append(kind)
    return out


def meter(conn, meter_id):
    r = conn.execute(sa.select(st.meters).where(st.meters.c.id == meter_id)).first()
    return r and r._asdict()


def battery(conn, meter_id):
    """A battery meter's newest cell record (PROTOCOL.md §3.3 kind 4), or None."""
    r = conn.execute(sa.select(st.battery).where(st.battery.c.meter == meter_id)).first()
    return r and r._asdict()


def events(conn, meter_id, limit=100):
    e = st.events
    rows = conn.execute(sa.select(e).where(e.c.meter == meter_id).order_by(e.c.seq.desc())
                        .limit(limit)).all()
    return [dict(r._asdict(), name=event_name(r.code)) for r in rows]


def history(conn, meter_id, kind, limit=100):
    h = st.history
    rows = conn.execute(sa.select(h).where(h.c.meter == meter_id, h.c.kind == kind)
                        .order_by(h.c.seq.desc()).limit(limit)).all()
    return [r._asdict() for r in rows][::-1]


def commands(conn, meter_id, limit=50):
    """The meter's commands, newest first, each with its ack (code, value)."""
    c, a = st.commands, st.acks
    rows = conn.execute(sa.select(c).where(c.c.meter == meter_id).order_by(c.c.sent.desc())
                        .limit(limit)).all()
    acks = {}
    for n, val in conn.execute(sa.select(a.c.n, a.c.val).where(a.c.meter == meter_id)
                               .order_by(a.c.received)):
        acks[n] = val
    out = []
    for r in rows:
        out.append(dict(r._asdict(), result=result_name(r.code), val=acks.get(r.n)))
    return out


def topups(conn, meter_id, limit=50):
    t = st.topups
    return [r._asdict() for r in conn.execute(
        sa.select(t).where(t.c.meter == meter_id).order_by(t.c.created.desc()).limit(limit))]


def headend_alarms(conn, meter_id=None, limit=500):
    """The head-end's alarms, one row per meter and kind, newest first: how
    many, the first one's time and the newest one's detail and time. A
    meter that raises thousands of one kind (its customer can: one per
    publish) is one row, and pushes no other meter's alarm, nor its own
    other kinds, off the page."""
    a = st.alarms
    g = sa.select(a.c.meter, a.c.kind, sa.func.count().label("count"),
                  sa.func.min(a.c.received).label("first"),
                  sa.func.max(a.c.id).label("last_id")).group_by(a.c.meter, a.c.kind)
    if meter_id is not None:
        g = g.where(a.c.meter == meter_id)
    g = g.subquery()
    q = (sa.select(g.c.meter, g.c.kind, g.c.count, g.c.first, a.c.detail, a.c.received)
         .join(a, a.c.id == g.c.last_id).order_by(a.c.received.desc(), a.c.id.desc()))
    return [r._asdict() for r in conn.execute(q.limit(limit))]


# ---------------- consumption ----------------
def daily(conn, meter_id, days=30):
    """[(label, mL)] per day: the meter's frozen daily registers when the
    head-end fetched them (exact, the meter's local days), else the
    telemetry's volume register per UTC day. Second value: the source."""
    recs = history(conn, meter_id, "d", days)
    if recs:
        return [(_day(r["t"] - 1), r["dml"]) for r in recs], "daily registers"
    return _per_period(conn, meter_id, _day)[-days:], "telemetry (UTC days)"


def monthly(conn, meter_id, months=12):
    recs = history(conn, meter_id, "m", months)
    if recs:
        return [(_month(r["t"] - 1), r["dml"]) for r in recs], "monthly registers"
    return _per_period(conn, meter_id, _month)[-months:], "telemetry (UTC months)"


def _per_period(conn, meter_id, label):
    """Volume per period from the telemetry's cumulative register: the
    last reading of a period minus the last of the period before (the
    first period: its own first reading)."""
    t = st.telemetry
    out, prev, cur = [], None, None
    for rt, ml in conn.execute(sa.select(t.c.t, t.c.ml).where(t.c.meter == meter_id,
                                                              t.c.ml.is_not(None))
                               .order_by(t.c.seq)):
        k = label(rt)
        if cur is None or k != cur[0]:
            if cur is not None:
                out.append((cur[0], cur[2] - cur[1]))
                prev = cur[2]
            cur = [k, ml if prev is None else prev, ml]
        cur[2] = ml
    if cur is not None:
        out.append((cur[0], cur[2] - cur[1]))
    return out


def consumption(conn, since, until):
    """meter -> mL used in [since, until] (meter time), from telemetry: the
    span's last reading minus the last before it (or the span's first when
    there is none before). Three index seeks per meter (ix_telemetry_meter_t),
    not a scan of the telemetry."""
    t, m = st.telemetry, st.meters

    def reading(*where, newest=True):
        return (sa.select(t.c.ml).where(t.c.meter == m.c.id, t.c.ml.is_not(None), *where)
                .order_by(t.c.t.desc() if newest else t.c.t).limit(1).scalar_subquery())
    q = sa.select(m.c.id, reading(t.c.t < since),
                  reading(t.c.t >= since, t.c.t <= until),
                  reading(t.c.t >= since, t.c.t <= until, newest=False))
    return {meter_id: last - (before if before is not None else first)
            for meter_id, before, last, first in conn.execute(q) if last is not None}


def areas(conn, now, spans):
    """Regions and buildings with their meters and consumption over each
    span (seconds back from now): ({region: row}, {(region, building): row})."""
    m = st.meters
    regions, buildings = {}, {}
    rows = conn.execute(sa.select(m.c.id, m.c.region, m.c.building, m.c.online)).all()
    used = {s: consumption(conn, now - s, now) for s in spans}
    for r in rows:
        keys = [(regions, r.region)]
        if r.building:
            keys.append((buildings, (r.region, r.building)))
        for table, key in keys:
            row = table.setdefault(key, {"meters": 0, "online": 0, "ml": {s: 0 for s in spans}})
            row["meters"] += 1
            row["online"] += 1 if r.online else 0
            for s in spans:
                row["ml"][s] += used[s].get(r.id, 0)
    return regions, buildings


# ---------------- revenue ----------------
def _day(t):
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _month(t):
    return time.strftime("%Y-%m", time.gmtime(t))


PERIODS = {"day": _day, "month": _month}


def revenue(conn, period="month", since=0):
    """{(period, region): {"sold", "charged", "arrears", "refunded"}} in
    money units, from the ledger (docs/HEADEND.md §1.3: amounts >= 0, the
    source says which way they go), and what is owed
    per region now. An entry is dated by its meter time when it has one
    (a charge: the day it ends), else by when it was recorded.
      sold      credit the meters acknowledged as applied (source topup)
      charged   water and standing charges of the meters' days (charge)
      arrears   office arrears the meters accepted (arrears)
      refunded  money paid back for refused credit (refund)"""
    label = PERIODS[period]
    m, lg = st.meters, st.ledger
    region_of = dict(conn.execute(sa.select(m.c.id, m.c.region)).all())
    names = {"topup": "sold", "charge": "charged", "arrears": "arrears", "refund": "refunded"}
    out = {}
    when = sa.func.coalesce(lg.c.t, lg.c.recorded)
    for meter_id, source, t, amount in conn.execute(
            sa.select(lg.c.meter, lg.c.source, when, lg.c.amount).where(when >= since)):
        if meter_id not in region_of or source not in names:
            continue
        # a day's charge is dated at the midnight that ends it: the day is the second before
        row = out.setdefault((label(int(t) - (source == "charge")), region_of[meter_id]),
                             {"sold": 0, "charged": 0, "arrears": 0, "refunded": 0})
        row[names[source]] += amount
    return out, debt(conn, region_of)


def debt(conn, region_of):
    """region -> what customers owe now: negative balances and each
    meter's debt register as its last accepted arrears ack reported it."""
    out = {}
    for meter_id, bal in conn.execute(sa.select(st.meters.c.id, st.meters.c.bal)
                                      .where(st.meters.c.bal < 0)):
        out[region_of[meter_id]] = out.get(region_of[meter_id], 0) - bal
    ar = st.arrears
    last = (sa.select(ar.c.meter, sa.func.max(ar.c.seq).label("seq"))
            .where(ar.c.code == codes.ACCEPTED).group_by(ar.c.meter).subquery())
    for meter_id, d in conn.execute(sa.select(ar.c.meter, ar.c.debt).join(
            last, sa.and_(ar.c.meter == last.c.meter, ar.c.seq == last.c.seq))):
        if meter_id in region_of and d:
            out[region_of[meter_id]] = out.get(region_of[meter_id], 0) + d
    return out


# ---------------- alarms ----------------
def alarm_list(conn, now, silent_s):
    """Everything an operator should look at: event alarms of the last
    week, the head-end's alarms, meters silent for longer than silent_s."""
    e, m = st.events, st.meters
    # one row per meter and alarm code (how many, the newest one's time and
    # argument): a meter's own flood of tamper events hides no other alarm
    g = (sa.select(e.c.meter, e.c.code, sa.func.count().label("count"),
                   sa.func.max(e.c.seq).label("seq"))
         .where(e.c.code.in_(ALARM_EVENTS), e.c.received > now - ALARM_WINDOW_S)
         .group_by(e.c.meter, e.c.code).subquery())
    ev = [dict(r._asdict(), name=ALARM_EVENTS[r.code]) for r in conn.execute(
        sa.select(g.c.meter, e.c.t, g.c.code, g.c.count, e.c.arg, e.c.received)
        .join(e, sa.and_(e.c.meter == g.c.meter, e.c.seq == g.c.seq))
        .order_by(e.c.received.desc(), e.c.meter).limit(1000))]
    silent = [r._asdict() for r in conn.execute(
        sa.select(m.c.id, m.c.region, m.c.building, m.c.last_seen)
        .where(sa.or_(m.c.last_seen.is_(None), m.c.last_seen < now - silent_s))
        .order_by(m.c.last_seen.is_(None).desc(), m.c.last_seen))]
    return ev, headend_alarms(conn), silent

