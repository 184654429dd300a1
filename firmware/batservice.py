# A battery meter's service mode (docs/BATTERY.md §12, docs/SERVICE.md §8).
#
# A battery meter's wake runs no REPL (firmware/wake.py). At a power-on
# (a cell fitted, the power switch, the EN line of a serial adapter) it
# reads the serial line for LISTEN_MS; the line `svc` keeps it awake in the
# service mode: the meter's own loop runs on the board's thread as on a
# mains meter (main.spawn, Session.background: the ULP counts, meter.poll
# bills, runs the policy and the valve), and the main thread waits in the
# production gate (Session.gate) exactly as a mains meter's, the entering
# line being the gate's first `svc`. Unanswered within GATE_S the meter
# goes back to deep sleep; an office token opens the REPL for its minutes,
# at most OPEN_MAX_MIN, after which (or at done()) the meter resets, and
# the reset's wake ends in deep sleep as every wake does.
#
# Not the button held at power-on: on esp32_battery the button is GPIO0, a
# strapping pin, and held low through a power-on it starts the ROM's serial
# download mode, never this firmware. A technician needs the serial line
# for the gate anyway.
#
# What a customer (button, power switch, serial port) can do with it: enter
# it PER_DAY times a local day (counted in flash before the mode starts, so
# a pull of the cell does not give an entry back) and keep the CPU awake
# GATE_S each time; every millisecond awake is counted in the cell's charge
# (power.CellEstimate.awake), and each entry is an event the office sees.
import codes

LISTEN_MS = const(2000)       # the line is read this long at every power-on
GATE_S = const(120)           # from power-on: the challenge answered by then, or sleep
OPEN_MAX_MIN = const(30)      # the longest REPL a token opens on a battery meter
PER_DAY = const(2)            # entries a local day, by the meter's clock
STEP_MS = const(1000)         # the mode's task: charge counted, hard end checked
SAVE_S = const(60)            # the charge count saved this often while awake
_POLL_MS = const(50)
_DAY_S = const(86400)
_FILE = "/svcmode"            # "day entries" in the state directory


def _day(meter):
    return (meter.clock.time() + meter.cfg["tz"]) // _DAY_S


def entries(state_dir, day):
    """Entries so far on this local day, and the day they count for. The
    day never goes back (a clock set back gives no new day); a record that
    cannot be read counts as a full day (fail closed: no entry until the
    next day)."""
    try:
        with open(state_dir + _FILE) as f:
            d, n = (int(x) for x in f.read().split())
    except OSError:
        return day, 0                 # no record: never entered
    except ValueError:
        return day, PER_DAY
    if day > d:
        return day, 0
    return d, n


def _record(state_dir, day, n):
    import os
    path = state_dir + _FILE
    with open(path + ".new", "w") as f:
        f.write("%d %d" % (day, n))
    os.rename(path + ".new", path)


class _Charge:
    """The CPU's time awake beyond a wake's own, into the cell's count."""

    def __init__(self, meter, t0):
        self.meter = meter
        self.last = t0

    def count(self):
        m = self.meter
        c = m.clock
        now = c.ticks_ms()
        ms = c.ticks_diff(now, self.last)
        self.last = now
        if m.cell is not None and ms > 0:
            m.cell.awake(c.time(), ms)


class _Again:
    """The serial line with the line that entered the mode handed to the
    gate first: the challenge comes at once."""

    def __init__(self, con, line):
        self._con = con
        self._first = [line]
        self.out = con.out

    def lines(self):
        got, self._first = self._first, []
        return got + self._con.lines()


def offer(meter, hw, production, version="?", console=None, wait=None):
    """At a power-on wake, the service mode if the line asks for it.
    Returns the Session once its REPL is open (boot() returns it to the
    prompt), or None: the wake goes on to deep sleep. console: the serial
    line (techaccess.Console); wait(ms) paces reading it (default: the
    board's delay while listening, before the meter's thread runs, then the
    gate's own sleep; tests step the virtual clock and a ManualTicker).
    A failure anywhere in it (the entry's record unwritable, a bug) logs
    internal-error arg 3 and returns None: boot()'s production hold would
    keep the CPU awake."""
    if hw.wake_reason != "power":
        return None
    try:
        return _offer(meter, hw, production, version, console, wait)
    except Exception as e:  # noqa: BLE001 - whatever it is, the cell comes first
        _failed(meter, e)
        import service
        s = service._s
        if s is not None and s.meter is meter:
            s.ticker.stop()
        return None


def _failed(meter, e):
    try:
        print("service mode error:", repr(e))
    except Exception:  # noqa: BLE001 - a MemoryError while reporting one
        pass
    meter.log.add(codes.EV_INTERNAL, 3)       # never raises


def _offer(meter, hw, production, version, console, wait):
    import techaccess
    c = meter.clock
    t0 = c.ticks_ms()
    con = console or techaccess.Console()
    pace = wait or c.delay_ms
    mid = meter.cfg["meter_id"]
    day, n = entries(hw.state_dir, _day(meter))
    if n >= PER_DAY:
        con.out("meter %s: service mode used %d times today; again tomorrow" % (mid, n))
        return None
    con.out("meter %s: battery, asleep in %d s. Technician: type svc" % (mid, LISTEN_MS // 1000))
    charge = _Charge(meter, t0)
    asked = False
    while not asked and c.ticks_diff(c.ticks_ms(), t0) < LISTEN_MS:
        asked = ["svc"] in [ln.split() for ln in con.lines()]
        if not asked:
            pace(_POLL_MS)
    if not asked:
        charge.count()
        return None
    _record(hw.state_dir, day, n + 1)     # durable before the mode: a pull gives it not back
    meter.log.add(codes.EV_SERVICE_MODE, n + 1)
    return _run(meter, hw, production, version, _Again(con, "svc"), wait, t0, charge, n + 1)


def _run(meter, hw, production, version, con, wait, t0, charge, n):
    import main
    import service
    c = meter.clock
    hard = c.ticks_add(t0, (GATE_S + OPEN_MAX_MIN * 60) * 1000)
    main.spawn(meter, hw, None, (_task(meter, hw, charge, hard),))
    s = service.attach(meter, hw, None, version)
    s.end_service = lambda: end(s, charge)
    s.background()
    con.out("service mode %d of %d today; back to sleep at %d s without an office token" % (
        n, PER_DAY, GATE_S))
    try:
        if production:
            opened = s.gate(console=con, wait=wait, until=c.ticks_add(t0, GATE_S * 1000),
                            max_minutes=OPEN_MAX_MIN)
        else:
            opened = True             # development: the REPL is free, as on mains
            with s.ticker.hold():
                s.service_until = c.ticks_add(c.ticks_ms(), OPEN_MAX_MIN * 60_000)
    except Exception as e:  # noqa: BLE001 - a bug here must not keep the CPU awake
        with s.ticker.hold():
            _failed(meter, e)
        opened = False
    if opened:
        con.out("service mode: done() ends it; it ends by itself at the window's end")
        return s
    s.ticker.stop()
    charge.count()
    meter.log.add(codes.EV_SERVICE_MODE, 0)
    meter.save()
    con.out("service mode: closed; back to sleep")
    return None


async def _task(meter, hw, charge, hard):
    """On the meter's thread: the charge counted every STEP_MS, saved every
    SAVE_S, and a hard end whatever the session does."""
    c = meter.clock
    saved = c.time()
    while True:
        charge.count()
        if c.ticks_diff(c.ticks_ms(), hard) >= 0:
            _end(meter, hw, charge)
        if c.time() - saved >= SAVE_S:
            meter.save()
            saved = c.time()
        await c.sleep_ms(STEP_MS)


def end(s, charge):
    """The technician's done(), or the token's window over: count, log,
    save, reset (the reset's wake sleeps)."""
    print("service mode over: saved; back to deep sleep")
    with s.ticker.hold():
        s.service_until = None
        s.meter.log.add(codes.EV_SERVICE_OPEN, 0)
        _end(s.meter, s.hw, charge)


def _end(meter, hw, charge):
    charge.count()
    meter.log.add(codes.EV_SERVICE_MODE, 0)
    meter.save()
    hw.reset()
