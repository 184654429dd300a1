# The meter's state record: what Meter.save() writes and Meter.restore()
# reads back (the two-slot file under it is storage/state.py). The keys are
# the on-flash format: an older image (an OTA rollback) reads what this one
# writes and the other way round (docs/OTA.md §5,
# tests/host/test_ota_state_compat.py), so a key is never renamed or given
# another meaning; a key added later defaults when a record lacks it.
#
# The meter owns every field; this module only maps them to keys and back,
# and checks what it reads (a record can come from any image, or from flash
# that was written by hand).
import codes
from codes import WHY_CREDIT
import ledger
from metering import tariff as tariffs
from metering.billing import Billing
from metering.volume import Volume

KEY_MAX = const(1 << 32)      # credit sequence and account numbers are 32-bit
# the MQTT command counter is (epoch << 32 | n), epoch < 2^31 (docs/LINK.md §7)
COUNTER_MAX = 1 << 63
# identity, kept in the state (config.json is only its first source)
IDENTITY = ("meter_id", "region", "account", "install_seq")
_K_PULSE_MARK = "ulp"         # state key: the pulse source's mark (None: not saved)
_K_CELL = "bq"                # state key: the battery's charge count (power.CellEstimate)
_K_WINDOW = "rw"              # state key: the reporting windows' schedule (window.Schedule)
# evidence that a meter without state ran before (EV_STATE_LOST arg bits)
_LOST_LOG = const(1)           # the event log has history
_LOST_CORRUPT = const(2)       # a state copy is there but damaged
_LOST_COUNTER = const(4)       # the old firmware's command counter file is there
_LOST_INSTALLED = const(8)     # config.json says the meter was installed
_LOST_PROVISIONED = const(16)  # secrets.json is there but not provisioning's first copy


def restore(m, provisioned=False):
    """Load the newest usable state; returns True if one was found. A
    copy that passes its CRC but cannot be applied (a format this
    firmware does not know) is skipped for the older copy, and logged.
    provisioned: secrets.json is there. Provisioning writes a first copy
    (storage/state.py mark_provisioned), so a provisioned meter with no
    copy at all lost its state; only that record alone is a new meter."""
    from storage.state import is_provisioning
    store = m.store
    copies = store.load_all()
    first = len(copies) == 1 and not store.corrupt and is_provisioning(copies[0][1])
    if first:
        copies = []
    for slot in store.corrupt:
        m.log.add(codes.EV_STATE_CORRUPT, slot)
    anomaly = store.anomaly
    if copies and copies[0][0] < m.log.restored_gen:
        anomaly = codes.STATE_BEHIND_LOG
    if anomaly:
        m.rollback = anomaly
        m.log.add(codes.EV_STATE_ROLLBACK, anomaly)
    # generations go on above any the log has seen, so a loss or a
    # rollback is not reported again at every boot
    store.generation = max(store.generation, m.log.restored_gen)
    legacy_n = store.legacy_counter()
    for gen, s in copies:
        try:
            apply(m, s)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            m.log.add(codes.EV_STATE_CORRUPT, 2 + (gen & 1))
            continue
        m.log.add(codes.EV_STATE_RESTORED, gen)
        try:
            m.history.flush()     # a record the state holds but its ring lost at a cut
        except OSError:
            pass
        if "cmdn" not in s:
            # first boot of this firmware: identity came from config.json,
            # the command counter from its old file; from now on both
            # live in the state
            m.cmd_counter = legacy_n or 0
            if m._try_save():
                store.drop_legacy_counter()
        m._check_clock()
        return True
    evidence = ((_LOST_LOG if m.log.had_history else 0) | (_LOST_CORRUPT if store.corrupt or copies else 0)
                | (_LOST_COUNTER if legacy_n is not None else 0)
                | (_LOST_INSTALLED if m.cfg["account"] or m.cfg["install_seq"] else 0)
                | (_LOST_PROVISIONED if provisioned and not first else 0))
    if evidence:
        # the meter ran before and its state is gone: the ledger is
        # empty, so card credits wait for the office's signed floor
        m.state_lost = True
        m.log.add(codes.EV_STATE_LOST, evidence)
    m.cmd_counter = legacy_n or 0
    m.history.adopt_rings()      # the rings survive a lost state: numbering goes on
    m._check_clock()
    m._try_save()
    m._try_save()        # both slots written: a missing twin means something
    return False


def apply(m, s):
    """Put record s into meter m; raises KeyError, TypeError, ValueError,
    IndexError or AttributeError on a record it cannot take (partly applied:
    the caller goes on to the older copy). Core fields are required; fields
    added later default, so a record written by an older firmware restores."""
    balance = s["bal"]
    volume = Volume.from_state(s["vol"])
    code, t = tariffs.parse(s["tar"])
    if t is None:
        # the stored tariff no longer validates: the configured one
        # takes over from here, and the event says so
        m.log.add(codes.EV_TARIFF_REJECTED, code)
        t = m.billing.tariff
    billing = Billing(t, 0, 0, m.cfg["tz"])
    billing.load_state(s["bill"])
    # "lg": the ledger as it is now; "led": the first firmware's format
    led = ledger.Ledger(s["lg"]) if "lg" in s else ledger.Ledger(s["led"], legacy=True)
    counter = _uint(s.get("cmdn", 0), COUNTER_MAX)
    floor = _uint(s.get("tf", 0))
    idn = s.get("idn")
    if idn is not None:
        _check_identity(idn)
    m.recovery_nonce = s.get("rnc", 0)
    m.balance, m.volume, m.billing, m.ledger = balance, volume, billing, led
    m.reverse = Volume.from_state(s["rev"]) if "rev" in s else Volume(volume.k_num, volume.k_den)
    m.in_debt = bool(s.get("debt", 0))
    m.period_end = s.get("pend", m.period_end)
    m.staged = tariffs.parse(s["stg"])[1] if s.get("stg") else None
    m.office_seq = dict(s.get("ofc", {}))
    m.emergency_owed = s.get("emo", 0)
    d = m.debt_reg
    d.amount, d.arrears_seq, d.week_end = s.get("dbt", (0, 0, 0))
    d.friendly = _uint(s.get("dbf", 0), d.amount + 1)   # a key of its own: older
    # firmware (an OTA rollback) unpacks "dbt" as three and ignores "dbf"
    m.want_open = bool(s.get("vw", 0))
    m.why_closed = s.get("vwhy", WHY_CREDIT)
    m.awaiting_confirm = bool(s.get("vcf", 0))
    m.low_level = s.get("low", 0)
    m.cmd_counter = counter
    m.time_floor = floor
    m.fw_floor = _uint(s.get("fwv", 0))
    m.fw_slot = s.get("fws") if isinstance(s.get("fws"), str) else None
    # fields this firmware does not write were written by a newer one
    # (an image that was rolled back): the first save keeps them, so the
    # newer image's state survives this one (docs/OTA.md §5)
    m._kept = s
    m.clock_trusted = not s.get("tu", 0)
    m.state_lost = bool(s.get("lost", 0))
    if idn is not None:
        for k, v in zip(IDENTITY, idn):
            m.cfg[k] = v
    if m.valve is not None:
        m.valve.last_move = s.get("vmv", 0)
    m.charged = _uint(s.get("tc", 0), 1 << 62)
    # the ULP count this volume includes (battery boards, metering/ulpcount.py)
    m.pulses.resume(s.get(_K_PULSE_MARK))
    if m.cell is not None:
        m.cell.load(s.get(_K_CELL))
    if m.window is not None:
        m.window.load(s.get(_K_WINDOW))
    h = m.history
    if "hs" in s:
        h.load_state(s["hs"])
    else:
        # a state from before the history: it starts from here
        h.d0 = list(m._registers()[:2])
        h.m0 = list(h.d0)
        h.adopt_rings()
    m._resume_from(volume.ml())


def build(m, floor):
    """The record of meter m as save() writes it, with floor as its time
    floor. Keys a newer firmware wrote (m._kept) go back unchanged."""
    s = {
        "bal": m.balance,
        "tc": m.charged,
        "hs": m.history.to_state(),
        "vol": m.volume.to_state(),
        "rev": m.reverse.to_state(),
        "debt": 1 if m.in_debt else 0,
        "tar": m.billing.tariff.to_dict(),
        "bill": m.billing.to_state(),
        "pend": m.period_end,
        "stg": m.staged.to_dict() if m.staged else None,
        "ofc": m.office_seq,
        "lg": m.ledger.to_state(),
        "rnc": m._nonce(),
        "emo": m.emergency_owed,
        "dbt": m.debt_reg.to_state(),
        "dbf": m.debt_reg.friendly,
        "vw": 1 if m.want_open else 0,
        "vwhy": m.why_closed,
        "vcf": 1 if m.awaiting_confirm else 0,
        "low": m.low_level,
        "vmv": m.valve.last_move if m.valve is not None else 0,
        "idn": [m.cfg[k] for k in IDENTITY],
        "cmdn": m.cmd_counter,
        "tf": floor,
        "tu": 0 if m.clock_trusted else 1,
        "lost": 1 if m.state_lost else 0,
        "fwv": m.fw_floor,
        "fws": m.fw_slot,
    }
    mark = m.pulses.mark()
    if mark is not None:
        s[_K_PULSE_MARK] = mark
    if m.cell is not None:
        s[_K_CELL] = m.cell.to_state()
    if m.window is not None:
        s[_K_WINDOW] = m.window.to_state()
    kept = m._kept
    if kept:
        kept.pop("led", None)   # the first firmware's ledger, replaced by "lg"
        m._kept = kept = {k: v for k, v in kept.items() if k not in s}
        for k, v in kept.items():
            s[k] = v
    return s


def _uint(v, limit=KEY_MAX):
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < limit:
        raise ValueError("not an unsigned int below its limit")
    return v


def _check_identity(idn):
    # [meter_id, region, account, install_seq] as stored; raises ValueError
    mid, region, account, seq = idn
    if not isinstance(mid, str) or not 1 <= len(mid) <= 16:
        raise ValueError("meter_id")
    if not 0 <= _uint(region) <= 65535:
        raise ValueError("region")
    _uint(account)
    _uint(seq)
