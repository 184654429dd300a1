# Result codes and event codes, shared by cards, MQTT acks, the REPL and the
# event log. Numbered in the spirit of STS (IEC 62055-41) result codes; the
# numbers are part of the contract (docs/PROTOCOL.md, docs/CARD.md) and never
# change meaning once released.
#
# CPython tools import this file too (tools/headend.py), so it is the one
# source of the numbers on both sides.
try:
    from micropython import const
except ImportError:         # CPython
    def const(x):  # type: ignore[misc]
        return x

# -- results of a request (credit, tariff, command) --
ACCEPTED = const(0)
USED = const(1)          # credit key already applied: acknowledged, not applied again
FORMAT = const(2)        # malformed payload or record
RANGE = const(3)         # a field is out of its allowed range
OLD = const(4)           # sequence/timestamp older than the replay window
SIGNATURE = const(5)     # MAC or signature check failed
OVER_LIMIT = const(6)    # max balance or per-top-up maximum exceeded
WRONG_METER = const(7)
WRONG_REGION = const(8)
KEY_EXPIRED = const(9)
LOCKED_OUT = const(10)   # too many failures; retry after the lockout delay
REFUSED = const(11)      # policy refused (e.g. remote open with no credit)
STORAGE = const(12)      # could not be made durable, so nothing was applied
UNKNOWN = const(13)      # unknown command or record type
CRC = const(14)
TIMEOUT = const(15)
CARD_GONE = const(16)
AUTH = const(17)
BLANK = const(18)
FOREIGN = const(19)
WRONG_ACCOUNT = const(20)  # a credit for another account than the one the meter is bound to
VOIDED = const(21)       # the office voided this credit key: it never applies (docs/CARD.md)
WRONG_BOARD = const(22)  # a firmware image for another board (docs/OTA.md)
BATTERY_LOW = const(23)  # the battery is below what the operation needs (docs/OTA.md)

RESULT_NAMES = (
    "accepted", "used", "format", "range", "old", "signature", "over-limit",
    "wrong-meter", "wrong-region", "key-expired", "locked-out", "refused",
    "storage", "unknown", "crc", "timeout", "card-gone", "auth", "blank",
    "foreign", "wrong-account", "voided", "wrong-board", "battery-low",
)

# -- events in the log (kept separate from results: an event may carry one) --
EV_POWER_UP = const(1)
EV_CREDIT = const(2)          # arg: amount applied
EV_CREDIT_REJECTED = const(3)  # arg: result code
EV_LOW_CREDIT_1 = const(4)
EV_LOW_CREDIT_2 = const(5)
EV_CREDIT_EXHAUSTED = const(6)
EV_VALVE_OPEN = const(7)
EV_VALVE_CLOSED = const(8)
EV_VALVE_FAULT = const(9)
EV_TARIFF = const(10)         # arg: tariff version now active
EV_TARIFF_REJECTED = const(11)  # arg: result code
EV_TAMPER = const(12)
EV_LEAK = const(13)
EV_BURST = const(14)
EV_REVERSE_FLOW = const(15)
EV_STATE_RESTORED = const(16)  # arg: generation
EV_STATE_CORRUPT = const(17)   # arg: which copy was bad
EV_EMERGENCY = const(18)       # arg: amount granted
EV_CARD_REJECTED = const(19)   # arg: result code
EV_CONFIG = const(20)
EV_KFACTOR = const(21)
EV_LOW_BATTERY = const(22)
EV_SENSOR_FAULT = const(23)
EV_OUTBOX_OVERFLOW = const(24)
EV_VALVE_EXERCISE = const(25)
EV_FLOW_WHILE_CLOSED = const(26)
EV_PERIOD_ROLLOVER = const(27)
EV_TIME_SET = const(28)
EV_FRIENDLY_DEBT = const(29)

EVENT_NAMES = (
    "", "power-up", "credit", "credit-rejected", "low-credit-1",
    "low-credit-2", "credit-exhausted", "valve-open", "valve-closed",
    "valve-fault", "tariff", "tariff-rejected", "tamper", "leak", "burst",
    "reverse-flow", "state-restored", "state-corrupt", "emergency-credit",
    "card-rejected", "config", "k-factor", "low-battery", "sensor-fault",
    "outbox-overflow", "valve-exercise", "flow-while-closed",
    "period-rollover", "time-set", "friendly-debt",
)


def result_name(code):
    return RESULT_NAMES[code] if 0 <= code < len(RESULT_NAMES) else "code-%d" % code


def event_name(code):
    return EVENT_NAMES[code] if 0 < code < len(EVENT_NAMES) else "event-%d" % code

# -- arguments of EV_TAMPER (1: the case switch, metering/detect.py) --
TAMPER_VALVE = const(2)       # the valve moved without a command (feedback, valve/controller.py)

# -- service REPL events (firmware/service.py, docs/SERVICE.md) --
EV_SERVICE_OPEN = const(30)    # production REPL opened by an office token; arg: minutes granted, 0 when the window ends
EV_SERVICE_AUTH = const(31)    # unlock() or a service token; arg: 0 success, else consecutive failures
EV_FACTORY_RESET = const(32)   # settings back to defaults (credit, volume, keys kept)
EVENT_NAMES = EVENT_NAMES + ("service-open", "service-auth", "factory-reset")  # type: ignore[assignment]

# -- MQTT link (firmware/comms, docs/PROTOCOL.md) --
EV_COMMAND_REJECTED = const(33)  # a remote command refused; arg: result code
EVENT_NAMES = EVENT_NAMES + ("command-rejected",)  # type: ignore[assignment]

# -- the meter loop itself (firmware/main.py) --
EV_INTERNAL = const(34)        # a poll raised (a bug); arg: consecutive failures, logged on the first
EVENT_NAMES = EVENT_NAMES + ("internal-error",)  # type: ignore[assignment]

# -- power-safe state and the clock (firmware/storage, meter.py, docs/METERING.md) --
EV_STATE_ROLLBACK = const(35)  # a state copy is missing or older than its twin; arg: STATE_* below
EV_STATE_LOST = const(36)      # no usable state although the meter ran before; arg: evidence bits
EV_CLOCK_UNTRUSTED = const(37)  # clock unset or behind the time floor; arg: CLOCK_* below
EV_STORAGE_FAILED = const(38)  # a periodic save failed; arg: mL metered since the last good save
EVENT_NAMES = EVENT_NAMES + ("state-rollback", "state-lost", "clock-untrusted",  # type: ignore[assignment]
                             "storage-failed")
STATE_COPY_MISSING = const(1)  # EV_STATE_ROLLBACK: only one copy, though two were written
STATE_GEN_GAP = const(2)       # EV_STATE_ROLLBACK: the two copies' generations are not consecutive
STATE_BEHIND_LOG = const(3)    # EV_STATE_ROLLBACK: older than the generation a previous boot restored
CLOCK_UNSET = const(1)         # EV_CLOCK_UNTRUSTED: before 2025-01-01 (an RTC that lost power)
CLOCK_BEHIND = const(2)        # EV_CLOCK_UNTRUSTED: behind the persisted time floor

# -- why the valve is closed (Meter.why_closed; telemetry flags bits 1-4,
#    `get state` "why", event 8's argument; docs/PROTOCOL.md §3.3) --
WHY_NONE = const(0)       # not closed: the valve should be open
WHY_CREDIT = const(1)     # credit exhausted
WHY_COMMAND = const(2)    # closed by a command (head-end, technician)
WHY_FAULT = const(3)      # reserved: this firmware reports a valve fault as event 9
WHY_LEAK = const(4)
WHY_BURST = const(5)
WHY_TAMPER = const(6)
WHY_BATTERY = const(7)    # battery too low to keep working
WHY_SENSOR = const(8)     # flow sensor cable cut
WHY_OVERRIDE = const(9)   # open by an authorised override with no credit (not closed)
WHY_POWER = const(10)     # closed by the power-fail input as the supply went; reopens at boot
WHY_NAMES = ("none", "credit", "command", "fault", "leak", "burst", "tamper", "battery",
             "sensor", "override", "power")


def why_name(why):
    return WHY_NAMES[why] if 0 <= why < len(WHY_NAMES) else "why-%d" % why

# -- MQTT transport and its guards (firmware/comms/net.py, link.py, docs/LINK.md) --
EV_MESSAGE_TOO_LONG = const(39)  # a packet over net.MAX_PACKET, discarded unread; arg: its length
EV_BAD_SIGNATURES = const(40)    # commands with a bad signature in one window; arg: how many
EVENT_NAMES = EVENT_NAMES + ("message-too-long", "bad-signatures")  # type: ignore[assignment]

# -- the credit ledger (firmware/ledger.py, docs/CARD.md "The ledger") --
EV_CREDIT_VOID = const(41)     # the office voided a credit key; arg: its seq
EV_CREDIT_FLOOR = const(42)    # the head-end's signed floor let credits in after a state loss; arg: card floor
EVENT_NAMES = EVENT_NAMES + ("credit-void", "credit-floor")  # type: ignore[assignment]

# -- debt recovery (Meter, docs/METERING.md "Social tariffs") --
EV_DEBT = const(43)            # the debt register changed; arg: + added (arrears, friendly debt), - repaid
EVENT_NAMES = EVENT_NAMES + ("debt",)  # type: ignore[assignment]
# -- firmware updates (docs/OTA.md) --
EV_OTA = const(44)             # arg: version << 16 | detail << 8 | OTA_* below
EVENT_NAMES = EVENT_NAMES + ("ota",)  # type: ignore[assignment]

# -- a battery meter's service mode (firmware/batservice.py, docs/BATTERY.md §12) --
EV_SERVICE_MODE = const(45)    # arg: the entry's number this local day (1..), 0 when the mode ends
EVENT_NAMES = EVENT_NAMES + ("service-mode",)  # type: ignore[assignment]
OTA_ACCEPTED = const(1)        # a manifest passed every check: download starts
OTA_REFUSED = const(2)         # a manifest refused; detail: the result code
OTA_RESUMED = const(3)         # a download goes on after a reset, from its last chunk
OTA_CHUNK_BAD = const(4)       # a chunk's digest failed: fetched again
OTA_IMAGE_BAD = const(5)       # the written image's SHA-256 or set_boot's check failed; detail: result code
OTA_SWITCHED = const(6)        # set_boot done: the next reset boots the new image
OTA_TRIAL = const(7)           # the new image runs, self-test pending
OTA_VALID = const(8)           # self-test passed, marked valid: the version floor is raised
OTA_SELFTEST_FAILED = const(9)  # detail: which check (ota/selftest.py); the reset rolls back
OTA_ROLLED_BACK = const(10)    # the old image runs again after a trial that did not confirm
OTA_RUNNING = const(11)        # at boot, when it changed: the version now running; detail: update state
OTA_TAMPER = const(12)         # a peripheral check failed on the new image and on the old one: hardware, not the image; detail: which check
OTA_WRONG_SLOT = const(13)     # at boot, the bootloader started another slot than the one validated last (otadata erased or put back): set_boot back to it and reset; detail: 0, or the result code when that image no longer checks
