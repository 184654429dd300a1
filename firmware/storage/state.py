# Power-safe state file.
#
# Two slots, <name>.0 and <name>.1. Generation g goes to slot g % 2, written
# as a new file and renamed over the slot (LittleFS renames atomically), so
# the other slot always holds the previous good copy. Each copy starts with a
# header line "MS2 <gen hex> <crc32 hex> <length>" and a JSON body; the CRC
# covers the generation and the length as well as the body, so a flipped bit
# in the generation cannot make an older copy win. On load the newest copy
# whose CRC, length and slot parity check out wins; a torn or corrupt copy is
# reported and skipped, and a missing twin or a gap between the two
# generations (a copy deleted, or an older one put back) is reported as
# `anomaly`. Copies of the first format (MS1, generation outside the CRC) are
# read only while no MS2 copy exists: the migration of a meter in the field.
import io
import json
import os
from binascii import crc32

from codes import STATE_COPY_MISSING, STATE_GEN_GAP

_MAGIC = b"MS2"
_LEGACY = b"MS1"


def _crc(gen, body):
    return crc32(body, crc32(b"%x %d\n" % (gen, len(body))))


class _Body(io.IOBase):
    # A stream json.dump writes the body into: counts its bytes and runs the
    # CRC over them as they come, and passes them on to `out` if given, so a
    # save holds no copy of the body (json.dumps then .encode() held it twice,
    # and the day's smallest heap was set there). MicroPython hands write() a
    # bytearray; CPython (tools/ provision state with this module) a str.
    def __init__(self, crc=0, out=None):
        self.length = 0
        self.crc = crc
        self._out = out

    def write(self, b):
        if isinstance(b, str):
            b = b.encode()
        self.length += len(b)
        self.crc = crc32(b, self.crc)
        if self._out:
            self._out.write(b)
        return len(b)


def _dump(state, crc=0, out=None):
    body = _Body(crc, out)
    json.dump(state, body)
    return body


class StateStore:
    def __init__(self, directory, name="state"):
        self._dir = directory
        self._base = directory + "/" + name
        self.generation = 0
        self.corrupt = []   # slots found bad by the last load()
        self.anomaly = 0    # STATE_COPY_MISSING / STATE_GEN_GAP from the last load(), or 0
        self.writes = 0

    def _slot(self, i):
        return "%s.%d" % (self._base, i)

    def load(self):
        """Return the newest valid state dict, or None if there is none."""
        copies = self.load_all()
        return copies[0][1] if copies else None

    def load_all(self):
        """Every copy whose CRC checks out, as (generation, dict), newest
        first; the caller falls back to the older one if the newer cannot
        be used. Sets `generation` to the newest, so saves go on from it."""
        found = []
        legacy = []
        present = 0
        self.corrupt = []
        for i in (0, 1):
            got = self._read(i)
            if got is None:
                continue
            present += 1
            if got is False:
                self.corrupt.append(i)
            elif got[2]:
                legacy.append(got[:2])
            else:
                found.append(got[:2])
        found.sort(key=lambda c: -c[0])
        legacy.sort(key=lambda c: -c[0])
        self.anomaly = 0
        if found:
            newest = found[0][0]
            if present == 1 and newest > 1:
                self.anomaly = STATE_COPY_MISSING
            elif len(found) == 2 and newest - found[1][0] != 1:
                self.anomaly = STATE_GEN_GAP
        found += legacy     # an MS1 copy is older than any MS2 copy
        if found:
            self.generation = max(g for g, _ in found)
        return found

    def _read(self, i):
        # None: no file; False: present but invalid; else (gen, dict, legacy)
        try:
            with open(self._slot(i), "rb") as f:
                raw = f.read()
        except OSError:
            return None
        try:
            nl = raw.index(b"\n")
            magic, gen, crc, length = raw[:nl].split()
            body = raw[nl + 1:]
            gen = int(gen, 16)
            if int(length) != len(body) or gen & 1 != i:
                return False
            if magic == _MAGIC:
                ok = int(crc, 16) == _crc(gen, body)
            else:
                ok = magic == _LEGACY and int(crc, 16) == crc32(body)
            if not ok:
                return False
            return gen, json.loads(body), magic == _LEGACY
        except (ValueError, TypeError, MemoryError):
            return False

    def save(self, state):
        # Three passes of json.dump over the same dict, none of them a copy of
        # the body: its length, then the CRC (seeded with the generation and
        # that length, as _crc), then the file. Nothing runs between them, so
        # they see the same dict in the same order.
        gen = self.generation + 1
        length = _dump(state).length
        crc = _dump(state, crc32(b"%x %d\n" % (gen, length))).crc
        head = b"%s %x %x %d\n" % (_MAGIC, gen, crc, length)
        slot = self._slot(gen & 1)
        tmp = slot + ".new"
        try:
            _write(tmp, head, state)
        except OSError:
            # A full flash: the copy this save replaces is the older one.
            # Freeing it leaves the newest intact and makes room.
            _remove(tmp)
            _remove(slot)
            _write(tmp, head, state)
        os.rename(tmp, slot)
        self.generation = gen
        self.writes += 1

    def legacy_counter(self):
        """The MQTT command counter of firmware that kept it in its own file
        (<dir>/cmd_n, no CRC), or None: read once, at migration."""
        try:
            with open(self._dir + "/cmd_n") as f:
                n = int(f.read())
        except (OSError, ValueError):
            return None
        return n if 0 <= n <= 0xFFFFFFFF else None

    def drop_legacy_counter(self):
        _remove(self._dir + "/cmd_n")


# Provisioning's first copy: {PROVISIONED: unix time}. With it, "secrets
# present, no state" means the state was lost, never that the meter is new
# (Meter.restore, docs/METERING.md "Total loss").
PROVISIONED = "prov"


def mark_provisioned(directory, t=0):
    """Write the provisioning record as the first state copy; False (and
    nothing written) if a copy, good or damaged, is already there."""
    store = StateStore(directory)
    if store.load_all() or store.corrupt:
        return False
    store.save({PROVISIONED: t})
    return True


def is_provisioning(state):
    return PROVISIONED in state and "bal" not in state


def _write(path, head, state):
    with open(path, "wb") as f:
        f.write(head)
        _dump(state, out=f)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
