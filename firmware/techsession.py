# The technician's session behind the REPL (docs/SERVICE.md): the meter's
# background tick and the session save, the production gate and the office
# token's service window, and the guard (the service PIN, its lockout, and
# what a production meter without a PIN allows).
#
# It owns the session's state: the unlock and its lockout, the gate's open
# request and window, the tick's error count and what the tick last saved.
# service.py holds the commands, which ask it (allowed(), unlock()) and
# print; a command may keep one value of its own here (a calibration run,
# s.cal).
import asyncio

import codes
from keystore import load as load_secrets

SESSION_SAVE_S = const(5)     # while a session is open, flow is saved this often
UNLOCK_S = const(900)         # an unlock lasts 15 min after the last guarded command
MAX_TRIES = const(3)          # failed PINs before the lockout starts
LOCKOUT_S = const(30)         # first lockout; doubles with each further failure
TICK_MS = const(25)


def _p(*a):
    # all output goes through service._p, which tests replace to capture it
    import service
    service._p(*a)


async def _slice():
    await asyncio.sleep_ms(0)


class Session:
    def __init__(self, meter, hw, link=None, version="?", ticker=None):
        self.meter = meter
        self.hw = hw
        self.link = link
        self.cards = None      # the card reader's session, when boot() attached one
        self.display = None    # the customer's display, when the board has one
        self.console = None    # the gate's serial line (techaccess.Console); None: sys.stdin
        self.version = version
        if ticker is None:
            from boards import ticker as tk
            ticker = tk.for_board(hw)
        self.ticker = ticker
        self.secrets = load_secrets(hw.state_dir)
        self.production = is_production(meter.cfg, self.secrets)
        self.unlocked_until = None
        self.fails = 0
        self.locked_until = 0
        self.open_request = None   # minutes granted by an office token (gate)
        self.service_until = None  # ticks_ms when the token's window ends
        self.cal = None            # the commands' calibration run (metering/calibration.Run)
        self.last_error = None
        self.tick_errors = 0
        self._saved_ml = meter.volume.ml()
        self._saved_t = meter.clock.time()

    # ---------------- the background tick ----------------
    def tick(self):
        """One slice of the firmware's event loop, then the session save."""
        try:
            asyncio.run(_slice())
            m = self.meter
            now = m.clock.time()
            ml = m.volume.ml()
            if ml != self._saved_ml and now - self._saved_t >= SESSION_SAVE_S:
                m.save()
                self._saved_ml = ml
                self._saved_t = now
            if self.service_until is not None and m.clock.ticks_diff(
                    m.clock.ticks_ms(), self.service_until) >= 0:
                self.end_service()
        except Exception as e:  # noqa: BLE001 - the tick must outlive any bug
            self.tick_errors += 1
            self.last_error = repr(e)

    def background(self):
        """Run the meter behind the REPL; save on exit where the port allows."""
        from boards import ticker as tk
        tk.on_exit(self.save_now)
        self.ticker.start(self.tick, TICK_MS)

    def save_now(self):
        with self.ticker.hold():
            self.meter.save()
            self._saved_ml = self.meter.volume.ml()
            self._saved_t = self.meter.clock.time()

    # ---------------- production gate ----------------
    def gate(self, poll_ms=200, console=None, wait=None, until=None, max_minutes=None):
        """Production: with the meter already running on its ticker thread
        (background(), as on every boot), keep the main thread here with
        Ctrl-C masked and the REPL closed, reading the serial line for the
        technician's challenge-response (techaccess.py), until an
        office-signed service token opens it for a bounded time; then
        return. No button, case switch or PIN opens it. The gate never runs
        the meter's loop: it touches the meter only inside ticker.hold(),
        and a signature verify (seconds on the chip) runs outside it.
        wait(ms) paces the line reading (default: sleep; tests step the
        virtual clock and a ManualTicker). A battery meter's service mode
        (batservice.py) bounds the gate: until, a ticks_ms deadline after
        which it returns False, the REPL still closed; max_minutes caps
        what a token grants. Returns True once opened."""
        import micropython
        import authority
        import techaccess
        micropython.kbd_intr(-1)      # masked since main.py's first statement
        self.ticker.unmask = False    # and no hold() may turn it back on
        if wait is None:
            import time
            wait = time.sleep_ms
        keys = self.meter.office
        con = console or self.console or techaccess.Console()
        mid = self.meter.cfg["meter_id"]
        if keys is None:
            if self.hw.tamper_pin is None:
                con.out("PRODUCTION REFUSED: %s has no case switch and no technician credential "
                        "(office key) is provisioned; the REPL stays closed" % self.hw.name)
            else:
                con.out("PRODUCTION: no technician credential (office key) is provisioned; "
                        "the REPL of %s cannot be opened" % mid)
            con.out("Metering goes on. Provision the office key (flash.py provision).")
            with self.ticker.hold():
                self.meter.log.add(codes.EV_CONFIG, codes.REFUSED)
        else:
            con.out("meter %s: production, REPL closed. Technician: type svc" % mid)
        ch = techaccess.Challenger(self.meter, keys, authority.verify, hold=self.ticker.hold)
        c = self.meter.clock
        while self.open_request is None:
            for line in con.lines():
                minutes = techaccess.handle(ch, line, con.out)
                if minutes:
                    self.open_request = minutes if max_minutes is None else min(minutes, max_minutes)
            if self.open_request is None:
                if until is not None and c.ticks_diff(c.ticks_ms(), until) >= 0:
                    return False
                wait(poll_ms)
        with self.ticker.hold():
            self.service_until = c.ticks_add(c.ticks_ms(), self.open_request * 60_000)
            self.meter.log.add(codes.EV_SERVICE_OPEN, self.open_request)
            self.meter.save()
        con.out("service open for %d min (then the meter restarts closed)" % self.open_request)
        self.ticker.unmask = True
        micropython.kbd_intr(3)
        return True

    def end_service(self):
        """The token's window is over: save, log, restart closed (on a board
        a reset, which boots into the gate again)."""
        self.service_until = None
        self.meter.log.add(codes.EV_SERVICE_OPEN, 0)
        self.meter.save()
        _p("service window over: restarting closed")
        reset = getattr(self.hw, "reset", None)
        if reset is not None:
            reset()

    # ---------------- guard ----------------
    def now(self):
        return self.meter.clock.time()

    def allowed(self, what):
        now = self.now()
        if self.secrets.get("svc_pin") is None:
            if self.production and self.open_request is None:
                _p("refused: %s needs a REPL opened by an office token or a service PIN" % what)
                return False
            return True   # development meter, or a production REPL the office opened
        if self.unlocked_until is not None and now < self.unlocked_until:
            self.unlocked_until = now + UNLOCK_S
            return True
        _p("locked: unlock('PIN') first (%s is guarded)" % what)
        return False

    def unlock(self, pin):
        """Check the service PIN (pinkdf.py) against its lockout. Returns
        (what, n): ("none", 0) no PIN provisioned, ("locked", s) still locked
        out s seconds, ("form", 0) the stored PIN is in a form this firmware
        does not take, ("ok", 0) unlocked for UNLOCK_S, ("wrong", fails),
        ("lockout", s) wrong and now locked out s seconds. Each check is
        logged (EV_SERVICE_AUTH, arg 0 or the failures so far)."""
        now = self.now()
        stored = self.secrets.get("svc_pin")
        if stored is None:
            return "none", 0
        if now < self.locked_until:
            return "locked", self.locked_until - now
        import pinkdf
        ok = pinkdf.check(stored, self.secrets.get("svc_salt"), pin)
        if ok is None:
            return "form", 0
        if ok:
            self.fails = 0
            self.unlocked_until = now + UNLOCK_S
            self.meter.log.add(codes.EV_SERVICE_AUTH, 0)
            return "ok", 0
        self.fails += 1
        self.meter.log.add(codes.EV_SERVICE_AUTH, self.fails)
        if self.fails >= MAX_TRIES:
            self.locked_until = now + LOCKOUT_S * (1 << min(self.fails - MAX_TRIES, 7))
            return "lockout", self.locked_until - now
        return "wrong", self.fails

    def lock(self):
        """End the unlocked period now."""
        self.unlocked_until = None

    def clear_lockout(self):
        """Failures and lockout forgotten (a factory reset)."""
        self.fails = 0
        self.locked_until = 0


def is_production(cfg, secrets):
    """A production meter keeps its REPL closed. Either store can say so and
    neither can take it back alone: provisioning writes "production" into
    secrets.json (written once, never by the firmware), cfg("production",
    True) into config.json, and a damaged config.json on a provisioned meter
    counts as production (fail closed)."""
    if cfg.get("production") is True or secrets.get("production") is True:
        return True
    return "_error" in cfg and bool(secrets)
