"""Scheduled tariffs: rows of scheduled_tariffs are published when due.

A row goes pending -> publishing -> published | refused | failed (or
cancelled while pending). The claim (pending -> publishing) is one
conditional UPDATE, so of several consoles on one store only one publishes
a row. The schedule is in the store, so it survives a restart; a row left
`publishing` by a crash is published again at the next start: the meters
answer a repeated tariff version `used` and change nothing
(docs/PROTOCOL.md §4.3), so publishing twice is harmless, never publishing
is not."""

import threading

import sqlalchemy as sa

from utility import schema as st

from . import audit


def publish_due(app, only=None):
    """Publish every pending row due by the app's clock (only: that row).
    Returns [(row id, result text)]."""
    t = st.scheduled_tariffs
    engine, he = app.extensions["store"], app.extensions["headend"]
    now = app.config["CLOCK"]()
    q = sa.select(t.c.id).where(t.c.status == "pending", t.c.due <= now).order_by(t.c.due, t.c.id)
    if only is not None:
        q = q.where(t.c.id == only)
    done = []
    with app.app_context():
        with engine.connect() as c:
            due = c.execute(q).scalars().all()
        for row_id in due:
            with engine.begin() as c:
                claimed = c.execute(t.update().where(t.c.id == row_id, t.c.status == "pending")
                                    .values(status="publishing")).rowcount
                row = c.execute(sa.select(t).where(t.c.id == row_id)).first()
            if claimed:
                done.append((row_id, _publish(app, engine, he, row)))
    return done


def _publish(app, engine, he, row):
    from .actions import HeadEndError
    t = st.scheduled_tariffs
    tariff = dict(row.body)
    target = f"region {row.region}" if row.meter is None else row.meter
    with audit.audited("scheduler", "tariff.publish", target,
                       {"row": row.id, "by": row.by_user, **tariff}) as out:
        try:
            if row.meter is None:
                he.publish_tariff(tariff, region=row.region)
                status, result = "published", "published, office-signed and retained"
            else:
                a = he.publish_tariff(tariff, meter=row.meter, timeout=app.config["ACK_TIMEOUT"])
                status = "published" if a["code"] in (0, 1) else "refused"
                result = f"ack {a['result']} (code {a['code']}), value {a['val']}"
        except HeadEndError as e:
            status, result = "failed", f"error: {e}"
        out.result = result
    with engine.begin() as c:
        c.execute(t.update().where(t.c.id == row.id)
                  .values(status=status, result=result, published=app.config["CLOCK"]()))
    return result


def recover(engine):
    """At start: rows a crash left `publishing` go back to pending."""
    t = st.scheduled_tariffs
    with engine.begin() as c:
        c.execute(t.update().where(t.c.status == "publishing").values(status="pending"))


class Scheduler:
    """A daemon thread that runs publish_due every SCHEDULER_INTERVAL s."""

    def __init__(self, app):
        self.app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tariff-scheduler", daemon=True)

    def start(self):
        recover(self.app.extensions["store"])
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.wait(self.app.config["SCHEDULER_INTERVAL"]):
            try:
                publish_due(self.app)
            except Exception as e:  # noqa: BLE001 - a bad row or a lost store must not end the schedule
                self.app.logger.error("tariff scheduler: %r", e)
