# The technician's commands at the serial REPL (docs/SERVICE.md).
#
# The REPL is the port's own; the meter runs behind it on a background tick
# (boards/ticker.py), so billing, the valve policy and MQTT go on while the
# prompt waits. Every command that touches the meter does so inside
# ticker.hold(), and only through the meter's own methods.
#
# Guards: commands that move money, change metrology or security settings
# need unlock(PIN) first on a meter with a provisioned service PIN; on a
# production meter without one they need a REPL opened by an office token.
# They are logged. The guard protects against mistakes and leaves an audit
# trail; what keeps a stranger off the REPL of a production meter is the
# production gate (Session.gate, techaccess.py, docs/SERVICE.md §4).
#
# The session (background tick, gate, guard) is techsession.py; this module
# holds the commands, and `from service import *` hands the prompt its names.
import asyncio  # noqa: F401 - the prompt's modules, as `from service import *` gives them
import gc
import json  # noqa: F401
import os  # noqa: F401

import codes
import config
import timeutil
from units import money, when
from storage import history as hist
from techsession import (Session, is_production, SESSION_SAVE_S, UNLOCK_S,  # noqa: F401
                         MAX_TRIES, LOCKOUT_S, TICK_MS)

_s = None   # the Session of this meter
_p = print  # all output goes through this (tests capture it)


def attach(meter, hw, link=None, version="?", ticker=None):
    global _s
    _s = Session(meter, hw, link, version, ticker)
    return _s


# why the last boot started no meter (main.boot sets it), for the commands
# at the prompt: a console that attached after the boot's message missed it
boot_failure = None


def _session():
    if _s is None:
        raise RuntimeError("no meter attached: %s" % (
            "boot failed: " + boot_failure if boot_failure else "boot() has not run"))
    return _s


# ---------------- secrets ----------------
from keystore import load as load_secrets  # noqa: E402,F401 - the REPL's name for it


# ---------------- formatting ----------------
def m3(ml):
    return "%d.%03d m3" % (ml // 1_000_000, (ml // 1000) % 1000)


_LEVELS = ("ok", "low-1", "low-2", "exhausted")


def _why(w):
    if w == codes.WHY_NONE:
        return ""
    return codes.WHY_NAMES[w] if 0 < w < len(codes.WHY_NAMES) else "why-%d" % w


def event_detail(code, arg):
    """What an event's argument means, for people (log(), the simulator):
    a result's name, an amount of money, why the valve moved; "" when the
    number says it all."""
    if code in (codes.EV_CREDIT_REJECTED, codes.EV_TARIFF_REJECTED, codes.EV_CARD_REJECTED,
                codes.EV_COMMAND_REJECTED):
        return codes.result_name(arg)
    if code in (codes.EV_CREDIT, codes.EV_EMERGENCY, codes.EV_LOW_CREDIT_1, codes.EV_LOW_CREDIT_2,
                codes.EV_CREDIT_EXHAUSTED, codes.EV_FRIENDLY_DEBT, codes.EV_DEBT):
        return money(arg)
    if code in (codes.EV_VALVE_OPEN, codes.EV_VALVE_CLOSED):
        return _why(arg)
    return ""


# ---------------- commands ----------------
def status():
    s = _session()
    m = s.meter
    with s.ticker.hold():
        snap = m.snapshot()
        c = m.cfg
        t = m.billing.tariff
        vol = m.volume
        pend = m.period_end
        owed = m.emergency_owed
        confirm = m.awaiting_confirm
        gen = m.store.generation
        ev = m.log.recent(64)
        pos = m.valve.position if m.valve is not None else None
    tz = c["tz"]
    bar = "-- meter %s -- region %d -- fw %s -- %s " % (snap["id"], c["region"], s.version, s.hw.name)
    _p((bar + "-" * 80)[:80])
    _p("Time     %s (tz %+d s)   ticks %d, longest %d ms" % (
        when(snap["t"], tz), tz, s.ticker.ticks, s.ticker.longest_us // 1000))
    _p("Credit   balance %s   owed %s   level %s   (low1 %s, low2 %s)" % (
        money(snap["bal"]), money(owed), _LEVELS[snap["low"]], money(c["low1"]), money(c["low2"])))
    fl = snap["flow"]
    _p("Volume   %s   flow %d.%d L/h   K %d/%d pulse/L   pulses %d" % (
        m3(snap["ml"]), fl // 1000, (fl // 100) % 10, vol.k_num, vol.k_den, vol.pulses))
    blocks = " ".join("%dL:%s" % (b[0], money(b[1])) for b in t.to_dict()["b"][:3])
    _p("Tariff   v%d  %s /m3   period ends %s" % (snap["tv"], blocks, when(pend, tz)[:10]))
    vs = "OPEN" if snap["valve"] else "CLOSED (%s)" % _why(snap["why"])
    ps = {None: "no valve", -1: "unknown", 0: "closed", 1: "open"}.get(pos, str(pos))
    _p("Valve    %s   position %s   awaiting confirm %s" % (vs, ps, "yes" if confirm else "no"))
    _p("Network  %s" % _net_line(s))
    _p("Alarms   %s" % _alarms(snap, ev))
    _p("State    generation %d   events %d   config %s   %s" % (
        gen, snap["evs"], "DEFAULTS (config.json bad)" if "_error" in c else "ok",
        _state_flags(snap["sf"])))
    mode = "production" if s.production else "development"
    if s.unlocked_until is not None and s.now() < s.unlocked_until:
        lk = "unlocked %d s" % (s.unlocked_until - s.now())
    else:
        lk = "locked" if s.secrets.get("svc_pin") else "no PIN"
    err = ("   tick errors %d" % s.tick_errors) if s.tick_errors else ""
    _p("Service  %s   %s   free RAM %d%s" % (mode, lk, gc.mem_free(), err))
    _p("-" * 80)


def _net_line(s):
    net = s.hw.net
    if net is None:
        return "no network on this board"
    up = net.isconnected()
    r = net.rssi() if up else None
    out = "wifi %s" % ("up rssi %s" % r if up else "down")
    link = s.link
    if link is None:
        return out + "   mqtt off"
    return out + "   mqtt %s   sent %d recv %d" % (
        "connected" if link.connected else "not connected", link.sent, link.received)


_ALARM_EVENTS = (codes.EV_LEAK, codes.EV_BURST, codes.EV_TAMPER, codes.EV_REVERSE_FLOW,
                 codes.EV_LOW_BATTERY, codes.EV_SENSOR_FAULT, codes.EV_VALVE_FAULT,
                 codes.EV_STATE_CORRUPT, codes.EV_FLOW_WHILE_CLOSED)


_SF_NAMES = ("CLOCK UNTRUSTED", "COPY ROLLED BACK", "STATE LOST", "SAVES FAILING")


def _state_flags(sf):
    # meter.SF_* bits, in their order
    out = [n for i, n in enumerate(_SF_NAMES) if sf & 1 << i]
    return ", ".join(out) if out else "sound"


def _alarms(snap, evs):
    out = []
    if snap["low"]:
        out.append(_LEVELS[snap["low"]])
    seen = []
    for e in evs:
        if e[2] in _ALARM_EVENTS and e[2] not in seen:
            seen.append(e[2])
    for c in seen:
        out.append(codes.event_name(c))
    line = ", ".join(out) if out else "none"
    return line if len(line) <= 70 else line[:67] + "..."


def log(n=20):
    """The newest n events, oldest first."""
    s = _session()
    with s.ticker.hold():
        evs = s.meter.log.recent(n)
    tz = s.meter.cfg["tz"]
    for seq, t, code, arg in evs:
        detail = event_detail(code, arg)
        _p("%6d %s %-18s %11d%s" % (seq, when(t, tz), codes.event_name(code), arg,
                                    "  (%s)" % detail if detail else ""))
    if not evs:
        _p("(no events)")


def history(kind="d", n=10):
    """The frozen registers: history() the newest 10 days, history("m", 12)
    months, history("a") alarm hours and latch, history("clear") clears
    the latch (guarded)."""
    s = _session()
    h = s.meter.history
    tz = s.meter.cfg["tz"]
    if kind == "clear":
        if s.allowed("history('clear')"):
            with s.ticker.hold():
                h.clear_latch()
                s.meter.save()
            _p("alarm latch cleared")
        return
    if kind == "a":
        names = [n for i, n in enumerate(hist.ALARMS) if h.latched & 1 << i]
        _p("latched: %s" % (", ".join(names) or "none"))
        for name, hours in zip(hist.ALARMS, h.hours()):
            _p("  %-8s %6d h" % (name, hours))
        return
    day, mon = h.today(), h.month()
    _p("today %s %s   period so far %s %s" % (m3(day["ml"]), money(day["chg"]),
                                               m3(mon["ml"]), money(mon["chg"])))
    for r in h.records(kind, 0, n):
        _p("%4d %s %s %10s bal %10s %s" % (r[0], when(r[1], tz)[:10], m3(r[5]), money(r[7]),
                                           money(r[8]), "x%d" % r[3] if r[3] > 1 else ""))


def save():
    """Write the meter state to flash now."""
    _session().save_now()
    _p("saved")


# -- card --
def card():
    """Read the card on the reader: chip version and UID."""
    s = _session()
    hw = s.hw
    if hw.card_spi is None:
        _p("card: this board has no card reader")
        return None
    try:
        from card.mfrc522 import MFRC522
    except ImportError:
        _p("card: no card driver in this build")
        return None
    with s.ticker.hold():
        try:
            r = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock)
            ver = r.read_reg(0x37)
            if not r.request(True):
                _p("card: reader v%02x, no card in the field" % ver)
                return None
            n = r.select()
            uid = "".join("%02X" % b for b in r.uid[:n])
            _p("card: reader v%02x  UID %s  SAK %02x  ATQA %04x" % (ver, uid, r.sak, r.atqa))
        except Exception as e:  # noqa: BLE001 - a bad card must not hurt the REPL
            _p("card: read failed: %r" % e)
            return None
    return uid


# -- valve --
def _valve_request(want_open):
    s = _session()
    with s.ticker.hold():
        code = s.meter.request_valve(want_open, "repl")
    _p("valve %s: %s" % ("open" if want_open else "close", codes.result_name(code)))
    return code


def valve_open():
    """Ask the meter to open the valve. The credit policy still applies: with
    no credit outside friendly hours the meter refuses."""
    if _session().allowed("valve_open"):
        _valve_request(True)


def valve_close():
    """Close the valve for service; the meter records the command reason."""
    _valve_request(False)


def valve_test():
    """One exercise cycle now (Meter.exercise_valve): close and return the
    valve to where the meter wants it; the controller checks the movement
    with the board's feedback, if any."""
    s = _session()
    m = s.meter
    if m.valve is None:
        _p("valve: none on this board")
        return
    with s.ticker.hold():
        code = m.exercise_valve()
    _p("valve test: %s" % codes.result_name(code))


# -- K-factor --
def cal_start(litres=10):
    """Start a calibration run: then let exactly `litres` flow into a test
    measure and call cal_stop()."""
    s = _session()
    if not (isinstance(litres, int) and 1 <= litres <= 10_000):
        _p("cal_start: litres must be a whole number 1..10000")
        return
    from metering.calibration import Run   # only when a technician calibrates
    with s.ticker.hold():
        s.cal = Run(s.meter.volume, litres, s.now())
    _p("calibration: counting. Run exactly %d L into the measure, then cal_stop()" % litres)


def cal_stop():
    """End the run; prints the measured K-factor and the meter's error."""
    s = _session()
    c = s.cal
    if c is None:
        _p("cal_stop: no run in progress (cal_start first)")
        return None
    with s.ticker.hold():
        got = c.stop(s.meter.volume)
    if got is None:
        s.cal = None
        _p("cal_stop: the K-factor changed during the run; start again")
        return None
    n, ml = got
    if n == 0:
        _p("cal_stop: no pulses counted; is water flowing through the meter?")
        return None
    err = c.error(ml)   # hundredths of a percent
    sign = "-" if err < 0 else "+"
    err = -err if err < 0 else err
    _p("calibration: %d pulses for %d L in %d s" % (n, c.litres, s.now() - c.t0))
    _p("  meter read %d mL with K %d/%d: error %s%d.%02d %%" % (
        ml, c.k[0], c.k[1], sign, err // 100, err % 100))
    _p("  new K %d/%d pulse/L; cal_apply() to use it" % c.new)
    if n < 200:
        _p("  warning: only %d pulses, resolution %d.%d %%; use a larger volume" % (
            n, 100 // n, (1000 // n) % 10))
    return c.new


def cal_apply():
    """Use the K-factor of the last cal_stop() (guarded)."""
    s = _session()
    c = s.cal
    if c is None or c.new is None:
        _p("cal_apply: nothing measured (cal_start, cal_stop first)")
        return
    set_k(c.new[0], c.new[1])
    s.cal = None


def calibrate(litres=10):
    """Guided calibration with a test volume, asking at each step."""
    s = _session()
    _p("K-factor calibration with a %d L test measure." % litres)
    _p("1. Put the measure under the outlet; open the valve (valve_open()).")
    input("2. Press Enter, then open the tap. ")
    cal_start(litres)
    input("3. Close the tap at exactly %d L, then press Enter. " % litres)
    new = cal_stop()
    if new is None:
        return
    if input("4. Apply K %d/%d? [y/N] " % new).strip().lower() == "y":
        cal_apply()
    else:
        s.cal = None
        _p("not applied")


def set_k(num, den=1):
    """Set the K-factor (pulses per litre, as num/den) directly (guarded)."""
    s = _session()
    if not s.allowed("set_k"):
        return
    with s.ticker.hold():
        code = s.meter.set_k_factor(num, den)
    _p("K %s/%s: %s" % (num, den, codes.result_name(code)))


# -- time --
def time_set(y, mo=None, d=None, h=0, mi=0, sec=0):
    """time_set(unix_seconds) or time_set(2026, 3, 14, 9, 30, 0) in UTC
    (guarded: time drives billing periods and friendly hours)."""
    s = _session()
    if mo is None:
        t = y
    else:
        if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= sec < 60):
            _p("time_set: date out of range")
            return
        t = timeutil.civil_to_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
    if not isinstance(t, int) or t < 1_704_067_200 or t > 4_102_444_800:
        _p("time_set: must be between 2024 and 2100")
        return
    if not s.allowed("time_set"):
        return
    with s.ticker.hold():
        s.meter.set_time(t)
    _p("time set: %s UTC" % when(t))


# -- configuration --
_NOTHING = object()
_FREE = ("low1", "low2", "report_s")   # settings a locked session may change


def cfg(key=None, value=_NOTHING):
    """cfg() lists settings, cfg("low1") reads one, cfg("low1", 800000) sets
    one after validation (most are guarded)."""
    s = _session()
    m = s.meter
    if key is None:
        for k in sorted(m.cfg):
            if not k.startswith("_"):
                _p("%-16s %s" % (k, _short(m.cfg[k])))
        return None
    if value is _NOTHING:
        if key not in m.cfg:
            _p("cfg: unknown setting %r" % key)
            return None
        return m.cfg[key]
    code, why = config.check(key, value, m.cfg)
    if code != codes.ACCEPTED:
        _p("cfg %s: refused: %s" % (key, why))
        return None
    if key not in _FREE and not s.allowed("cfg %s" % key):
        return None
    with s.ticker.hold():
        code, why = m.configure(key, value, "repl")
    if code != codes.ACCEPTED:
        _p("cfg %s: refused: %s" % (key, why))
        return None
    if key in config.RESTART:
        _p("cfg %s: saved; takes effect after reboot()" % key)
    else:
        _p("cfg %s: saved" % key)
    return None


def _short(v):
    r = repr(v)
    return r if len(r) <= 62 else r[:59] + "..."


# -- guard --
def unlock(pin):
    """Unlock guarded commands for 15 minutes with the service PIN."""
    what, n = _session().unlock(pin)
    if what == "none":
        _p("unlock: no service PIN provisioned (development meter)")
    elif what == "locked":
        _p("unlock: locked out for %d s more" % n)
    elif what == "form":
        _p("unlock: the stored PIN is not in a form this firmware accepts; re-provision it")
    elif what == "ok":
        _p("unlocked for %d min" % (UNLOCK_S // 60))
    elif what == "lockout":
        _p("unlock: wrong PIN; locked out for %d s" % n)
    else:
        _p("unlock: wrong PIN (%d of %d)" % (n, MAX_TRIES))


def lock():
    """End the unlocked period now."""
    _session().lock()
    _p("locked")


# -- self test --
def selftest():
    """Check the card reader, valve, flash, clock, network and broker.
    Returns the number of failures."""
    s = _session()
    hw = s.hw
    m = s.meter
    fails = 0
    from selfcheck import CHECKS   # only when a technician runs it
    for name, fn in CHECKS:
        try:
            with s.ticker.hold():
                ok, msg = fn(s, hw, m)
        except Exception as e:  # noqa: BLE001 - a failed check is a result
            ok, msg = False, "error %r" % e
        mark = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        if ok is False:
            fails += 1
        _p("%-12s %s  %s" % (name, mark, msg))
    _p("selftest: %d failure(s)" % fails)
    return fails


# -- reset, reboot --
def factory_reset(confirm=None):
    """Settings back to factory defaults. Keeps credit, volume, tariff, the
    credit ledger, the event log, K-factor, identity and keys. Guarded; pass
    the meter id to confirm: factory_reset("M000123")."""
    s = _session()
    m = s.meter
    if confirm != m.cfg["meter_id"]:
        _p("factory_reset: confirm with the meter id: factory_reset(%r)" % m.cfg["meter_id"])
        return
    if not s.allowed("factory_reset"):
        return
    keep = {}
    for k in config.KEEP_ON_RESET:
        if k in m.cfg:
            keep[k] = m.cfg[k]
    with s.ticker.hold():
        for k, v in config.DEFAULTS.items():
            m.cfg[k] = v
        m.cfg.update(keep)
        if "_error" in m.cfg:
            del m.cfg["_error"]
        config.save(s.hw.state_dir, m.cfg)
        m.save()
        m.log.add(codes.EV_FACTORY_RESET, 0)
    s.clear_lockout()
    _p("factory reset done: settings at defaults; credit, volume, keys kept.")
    _p("reboot() to restart with them")


def reboot():
    """Save the state, then soft-reset (the unix simulator exits)."""
    s = _session()
    s.save_now()
    s.ticker.stop()
    _p("state saved; rebooting")
    from boards import ticker as tk
    tk.soft_reset()


def cell_fitted(confirm=None):
    """A battery meter: a new cell is in, so the charge count starts again
    (as the office's fleet op `cell`; docs/BATTERY.md §8). Guarded; pass
    the meter id to confirm: cell_fitted("M000123")."""
    s = _session()
    m = s.meter
    if m.cell is None:
        _p("cell_fitted: this meter has no cell count (not a battery board)")
        return
    if confirm != m.cfg["meter_id"]:
        _p("cell_fitted: confirm with the meter id: cell_fitted(%r)" % m.cfg["meter_id"])
        return
    if not s.allowed("cell_fitted"):
        return
    with s.ticker.hold():
        code = m.cell_fitted()
    _p("cell_fitted: %s; the charge count starts again" % codes.result_name(code))


def done():
    """End the service now: a production meter restarts with its REPL
    closed; a battery meter's service mode ends and it goes back to deep
    sleep (batservice.py)."""
    s = _session()
    with s.ticker.hold():
        s.end_service()


# -- help --
_HELP = (
    ("status()", "identity, credit, volume, tariff, valve, network, alarms"),
    ("log(n=20)", "the newest n events"),
    ("card()", "read the card on the reader: UID and record"),
    ("valve_open()", "open through the credit policy (guarded)"),
    ("valve_close()", "close for service (reason: command)"),
    ("valve_test()", "close and reopen, report the position"),
    ("calibrate(L)", "guided K-factor calibration with an L-litre measure"),
    ("cal_start(L)", "  the same in steps: start counting,"),
    ("cal_stop()", "  stop and show the measured K and error,"),
    ("cal_apply()", "  use it (guarded)"),
    ("set_k(n, d)", "set K = n/d pulses per litre directly (guarded)"),
    ("time_set(...)", "set the clock in UTC: time_set(2026,3,14,9,30) (guarded)"),
    ("cfg(k, v)", "cfg() list, cfg('low1') read, cfg('low1', 800000) set"),
    ("selftest()", "card reader, valve, flash, clock, network, broker"),
    ("unlock(pin)", "unlock guarded commands for 15 min; lock() ends it"),
    ("history(k, n)", "frozen registers: 'd' days, 'm' months, 'a' alarms, 'clear'"),
    ("save()", "write the state to flash now"),
    ("factory_reset(id)", "settings to defaults; keeps credit, volume, keys"),
    ("reboot()", "save, then soft reset"),
    ("cell_fitted(id)", "battery: a new cell, the charge count restarts (guarded)"),
    ("done()", "end the service: closed again (battery: back to deep sleep)"),
)


def help(what=None):
    """help() lists the service commands; help("status") shows one."""
    if callable(what):
        what = what.__name__
    for name, text in _HELP:
        if what is None or name.startswith(str(what)):
            _p("%-18s %s" % (name, text))
    if what is None:
        _p("The meter keeps running while you type. Money is shown in major units.")
