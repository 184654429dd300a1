"""The console's read pages: meters, one meter, regions and buildings,
revenue, alarms. Viewers and operators see them all."""

from flask import Blueprint, abort, current_app, render_template, request

from . import charts, headend, need_login, now, queries, store

bp = need_login(Blueprint("views", __name__))

SPANS = (86400, 7 * 86400, 30 * 86400)   # consumption columns of the regions page


MAX_HOURS = 10 * 8784          # the silence asked about: up to ten years


def _silent_s():
    hours = request.args.get("hours", type=int)
    if hours is not None and not 1 <= hours <= MAX_HOURS:
        # a number past 64 bits reached the store's bound parameter (a 500 on SQLite)
        abort(400, f"hours is 1 .. {MAX_HOURS}")
    return (hours or current_app.config["SILENT_HOURS"]) * 3600


@bp.get("/meters")
def meters():
    region = request.args.get("region", type=int)
    if region is not None and not 0 <= region < 1 << 16:
        abort(400, "a region is 0 .. 65535")
    building = request.args.get("building") or None
    with store().connect() as c:
        rows = queries.meters(c, now(), _silent_s(), region, building)
    return render_template("meters.html", meters=rows, region=region, building=building)


@bp.get("/meters/<meter>")
def meter(meter):
    with store().connect() as c:
        m = queries.meter(c, meter)
        if m is None:
            abort(404)
        daily, daily_src = queries.daily(c, meter)
        monthly, monthly_src = queries.monthly(c, meter)
        page = {
            "m": m,
            "why": None if m["flags"] is None else queries.why_name(m["flags"]),
            "daily_chart": charts.bars(daily, title=f"{meter}: daily consumption"),
            "daily_src": daily_src,
            "monthly_chart": charts.bars(monthly, unit="m³", scale=1_000_000,
                                         title=f"{meter}: monthly consumption"),
            "monthly_src": monthly_src,
            "events": queries.events(c, meter),
            "hist_d": queries.history(c, meter, "d", 31)[::-1],
            "hist_m": queries.history(c, meter, "m", 12)[::-1],
            "commands": queries.commands(c, meter),
            "topups": queries.topups(c, meter),
            "alarms": queries.headend_alarms(c, meter),
            "battery": queries.battery(c, meter),
            "next_tv": (m["tv"] or 0) + 1,
        }
    return render_template("meter.html", can_act=headend() is not None, **page)


@bp.get("/regions")
def regions():
    with store().connect() as c:
        regions, buildings = queries.areas(c, now(), SPANS)
    return render_template("regions.html", regions=sorted(regions.items()),
                           buildings=sorted(buildings.items()), spans=SPANS)


@bp.get("/revenue")
def revenue():
    period = request.args.get("period", "month")
    if period not in queries.PERIODS:
        abort(400, "period is day or month")
    with store().connect() as c:
        rows, debt = queries.revenue(c, period)
    totals = {}
    for (p, _), r in rows.items():
        t = totals.setdefault(p, dict.fromkeys(r, 0))
        for k, v in r.items():
            t[k] += v
    return render_template("revenue.html", period=period, rows=sorted(rows.items(), reverse=True),
                           totals=sorted(totals.items(), reverse=True), debt=sorted(debt.items()))


@bp.get("/alarms")
def alarms():
    silent_s = _silent_s()
    with store().connect() as c:
        events, he_alarms, silent = queries.alarm_list(c, now(), silent_s)
    return render_template("alarms.html", events=events, he_alarms=he_alarms, silent=silent,
                           hours=silent_s // 3600)
