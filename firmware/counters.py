# The meter's counters that only go up, each made durable before the
# caller acts on it: the MQTT command counter (the link's anti-replay check,
# docs/LINK.md §7), the office's sequences ("f" fleet commands, "c" cards,
# "kr" retired key revisions: authority.py, signed.py) and the firmware
# version floor with its OTA slot (docs/OTA.md).
#
# These are methods of meter.Meter (it binds them; self is the meter), and
# the only writers of cmd_counter, office_seq, fw_floor and fw_slot besides
# storage/record.py's restore (and the migration of the old command counter
# file there).
import codes
from storage.record import COUNTER_MAX as _COUNTER_MAX


def command_counter(self):
    """The highest MQTT command counter accepted so far."""
    return self.cmd_counter


def accept_command(self, n):
    """The link's replay check: a signed command's counter must exceed
    every one accepted before. ACCEPTED only once the new counter is
    saved, so a replay after a power cut is still refused; OLD for a
    counter not above it, STORAGE if it could not be saved."""
    if not isinstance(n, int) or isinstance(n, bool):
        return codes.FORMAT
    if not 0 < n < _COUNTER_MAX:
        return codes.RANGE
    if n <= self.cmd_counter:
        return codes.OLD
    before = self.cmd_counter
    self.cmd_counter = n
    try:
        self.save()
    except Exception:  # noqa: BLE001 - not durable, so not accepted
        self.cmd_counter = before
        return codes.STORAGE
    return codes.ACCEPTED


def office_fresh(self, kind, n, equal_ok):
    """Is sequence n new for kind ("f" fleet commands: strictly above the
    last; "c" cards: not below it, so one card serves until a newer one
    is issued and tapped)?"""
    last = self.office_seq.get(kind, 0)
    return n > last or (equal_ok and n == last)


def office_note(self, kind, n):
    """Make sequence n of kind durable (before acting on it)."""
    before = self.office_seq.get(kind, 0)
    if n == before:
        return codes.ACCEPTED
    self.office_seq[kind] = n
    try:
        self.save()
    except Exception:  # noqa: BLE001 - not durable, so not taken
        self.office_seq[kind] = before
        return codes.STORAGE
    return codes.ACCEPTED


def retire_office_keys(self, rev):
    """Refuse office key revisions below rev from now on (persisted; the
    provisioned office_min_rev can only be raised)."""
    if self.office is None or rev > max(self.office.revs):
        return codes.RANGE   # never retire every key the meter has
    if rev <= self.office.min_rev:
        return codes.USED
    code = self.office_note("kr", rev)
    if code == codes.ACCEPTED:
        self.office.retire_below(rev)
    return code


def raise_fw_floor(self, version, slot=None):
    """The firmware version floor goes up to version (never down), with
    the OTA slot label it runs from, made durable before the caller
    confirms the image (docs/OTA.md): at boot another slot is not run."""
    if version <= self.fw_floor:
        return codes.OLD     # a trial of an older or equal version confirms nothing
    old = self.fw_floor, self.fw_slot
    self.fw_floor, self.fw_slot = version, slot
    try:
        self.save()
    except Exception:  # noqa: BLE001 - OSError, MemoryError: not confirmed
        self.fw_floor, self.fw_slot = old
        return codes.STORAGE
    return codes.ACCEPTED


def attach_office(self, keys):
    """The office public keys (authority.load), with the revisions this
    meter has retired since provisioning applied."""
    self.office = keys
    if keys is not None:
        keys.retire_below(self.office_seq.get("kr", 0))
