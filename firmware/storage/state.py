# Power-safe state file.
#
# Two slots, <name>.0 and <name>.1. Generation g goes to slot g % 2, written
# as a new file and renamed over the slot (LittleFS renames atomically), so
# the other slot always holds the previous good copy. Each copy starts with a
# header line "MS1 <gen hex> <crc32 hex> <length>" and a JSON body. On load
# the newest copy whose CRC and length check out wins; a torn or corrupt copy
# is reported and skipped.
import json
import os
from binascii import crc32

_MAGIC = b"MS1"


class StateStore:
    def __init__(self, directory, name="state"):
        self._base = directory + "/" + name
        self.generation = 0
        self.corrupt = []   # slots found bad by the last load()
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
        self.corrupt = []
        for i in (0, 1):
            got = self._read(self._slot(i))
            if got is False:
                self.corrupt.append(i)
            elif got is not None:
                found.append(got)
        found.sort(key=lambda c: -c[0])
        if found:
            self.generation = found[0][0]
        return found

    def _read(self, path):
        # None: no file; False: present but invalid; else (gen, dict)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        try:
            nl = raw.index(b"\n")
            magic, gen, crc, length = raw[:nl].split()
            body = raw[nl + 1:]
            if magic != _MAGIC or int(length) != len(body) or int(crc, 16) != crc32(body):
                return False
            return int(gen, 16), json.loads(body)
        except (ValueError, TypeError):
            return False

    def save(self, state):
        body = json.dumps(state).encode()
        gen = self.generation + 1
        head = b"%s %x %x %d\n" % (_MAGIC, gen, crc32(body), len(body))
        slot = self._slot(gen & 1)
        tmp = slot + ".new"
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(body)
        os.rename(tmp, slot)
        self.generation = gen
        self.writes += 1
