"""Staged firmware rollout from the head-end (docs/OTA.md §6).

A Rollout publishes one office-signed manifest, retained on the region's
`r/<r>/ota`, for group 1 (1 % of the fleet), then 2 (10 %), then 3 (all);
each meter knows its own place in the fleet (the same bucket as
`firmware/ota/manifest.py`) and takes only a manifest whose group covers it.
The head-end serves the image to the meters that ask for blocks on
`m/<id>/or`, in pieces on `m/<id>/o`. It learns each meter's state from its
event stream (event 44, `ota`) and

- advances to the next group once every meter of the current one that has
  reported runs the new version (`valid`) and at least `min_valid` do;
- halts (clears the retained manifest and stops serving) once at least
  `min_failed` distinct meters of the group (or all its members, if it
  has fewer) report a failure and the failures pass `threshold` of those
  that reported. Only tagged events count (docs/PROTOCOL.md §3.2), so a
  customer can report only for their own meter: one meter, however loud,
  never halts a region.
"""

from __future__ import annotations

import hashlib
import json
import time

import codes

PIECE = 2048                 # image bytes per message: under the meter's 4096-byte packet limit
GROUP_PERCENT = (0, 1, 10, 100)
FAILED = (codes.OTA_SELFTEST_FAILED, codes.OTA_ROLLED_BACK, codes.OTA_IMAGE_BAD)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    version INTEGER, board TEXT, region INTEGER, grp INTEGER, status TEXT,
    sha TEXT, started REAL, PRIMARY KEY (version, board, region));
"""


def bucket(meter_id: str) -> int:
    """The meter's place in the fleet, 0..99 (firmware/ota/manifest.py)."""
    h = hashlib.sha256(meter_id.encode()).digest()
    return (h[0] << 8 | h[1]) % 100


def manifest(image: bytes, version: int, board: str, group: int, bat: int = 0,
             cs: int = 65536, rb: int = 0) -> dict:
    """The manifest of an image (docs/OTA.md §1), unsigned."""
    d = {"k": "ota", "v": version, "b": board, "sz": len(image),
         "h": hashlib.sha256(image).hexdigest(), "cs": cs,
         "ch": [hashlib.sha256(image[i:i + cs]).hexdigest() for i in range(0, len(image), cs)],
         "bat": bat, "g": group}
    if rb:
        d["rb"] = 1
    return d


class Rollout:
    def __init__(self, headend, image: bytes, version: int, board: str, region: int,
                 bat: int = 0, cs: int = 65536, rb: int = 0, threshold: float = 0.2,
                 min_valid: int = 1, min_failed: int = 3, busy_s: float = 3 * 86400,
                 block_gap_s: float = 0.25, clock=time.time):
        self.he = headend
        self.image = image
        self.version, self.board, self.region = version, board, region
        self.bat, self.cs, self.rb = bat, cs, rb
        self.threshold = threshold
        self.min_valid = min_valid
        self.min_failed = min_failed
        self.busy_s = busy_s           # busy longer than this (last event received): stalled, not waited for
        self.block_gap_s = block_gap_s  # one block per meter per this many seconds
        self.clock = clock
        self._served = {}              # meter -> clock() of the last block sent to it
        self.group = 0
        self.status = "new"
        self.pieces_sent = 0
        self.he.db.executescript(SCHEMA)
        headend.ota = self

    # ---------------- the stages ----------------
    def _record(self):
        with self.he._lock:
            self.he.db.execute(
                "INSERT OR REPLACE INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.version, self.board, self.region, self.group, self.status,
                 hashlib.sha256(self.image).hexdigest(), time.time()))
            self.he.db.commit()

    def _publish(self, payload: bytes, timeout=10):
        self.he._need_client().publish(f"r/{self.region}/ota", payload, qos=1,
                                       retain=True).wait_for_publish(timeout)

    def start(self, group: int = 1):
        self.group = group
        self.status = "running"
        doc = manifest(self.image, self.version, self.board, group, self.bat, self.cs, self.rb)
        self._publish(self.he.sign_doc(b"ota", doc))
        self._record()

    def halt(self, why: str = "halted"):
        """No meter starts this version any more: the retained manifest is
        cleared and block requests go unanswered. Meters mid-download keep
        metering; they ask again with backoff and abandon nothing."""
        self.status = why
        self._publish(b"")
        self._record()

    # ---------------- what the fleet says ----------------
    def meters(self) -> list[str]:
        rows = self.he.db.execute("SELECT id FROM meters WHERE region = ? ORDER BY id",
                                  (self.region,)).fetchall()
        return [r[0] for r in rows]

    def state_of(self, meter: str) -> str | None:
        """'valid', 'failed', 'busy', 'stalled' (busy, nothing new for
        busy_s) or None (nothing reported) for this version, from the
        meter's newest ota event."""
        rows = self.he.db.execute(
            "SELECT arg, received FROM events WHERE meter = ? AND code = ? ORDER BY seq DESC",
            (meter, codes.EV_OTA)).fetchall()
        for arg, received in rows:
            if arg >> 16 != self.version:
                continue
            step = arg & 0xFF
            if step == codes.OTA_REFUSED:
                continue          # not its group yet, its battery: no verdict on the image
            if step == codes.OTA_VALID:
                return "valid"
            if step in FAILED:
                return "failed"
            if step == codes.OTA_RUNNING and (arg >> 8 & 0xFF) == 0:
                return "valid"
            if self.clock() - (received or 0) > self.busy_s:
                return "stalled"  # gone quiet mid-update: no longer holds the group back
            return "busy"
        return None

    def tally(self, group: int | None = None) -> dict:
        g = self.group if group is None else group
        out = {"members": 0, "valid": 0, "failed": 0, "busy": 0, "stalled": 0}
        for m in self.meters():
            if bucket(m) >= GROUP_PERCENT[g]:
                continue
            out["members"] += 1
            s = self.state_of(m)
            if s is not None:
                out[s] += 1
        return out

    def check(self) -> str:
        """Apply the rules once: halt, advance, or wait. Returns the status."""
        if self.status != "running":
            return self.status
        t = self.tally()
        reported = t["valid"] + t["failed"]
        # tally() counts each meter once, by its newest event
        if (t["failed"] >= max(1, min(self.min_failed, t["members"]))
                and t["failed"] > self.threshold * reported):
            self.halt("halted")
        elif t["busy"] == 0 and t["valid"] >= min(self.min_valid, t["members"]):
            if self.group < 3:
                self.start(self.group + 1)
            else:
                self.status = "done"
                self._record()
        return self.status

    # ---------------- serving the image ----------------
    def serve(self, meter: str, payload: bytes):
        """A block request from a meter: its pieces on m/<id>/o."""
        if self.status != "running" or bucket(meter) >= GROUP_PERCENT[self.group]:
            return
        now = self.clock()
        if now - self._served.get(meter, -self.block_gap_s) < self.block_gap_s:
            return                # one block in flight per meter, at most one a block_gap_s
        if self.state_of(meter) in ("valid", "failed"):
            return                # a meter with a verdict on this version needs no blocks
        # No event yet is served too: a meter's first request can reach the
        # head-end before the event saying it accepted the manifest (a race
        # the simulator showed). The group check above and the rate limit
        # below bound what one meter can draw.
        try:
            r = json.loads(payload)
            v, o, n = int(r["v"]), int(r["o"]), int(r["n"])
        except (ValueError, KeyError, TypeError):
            return
        if v != self.version or not 0 <= o < len(self.image) or not 0 < n <= 4096:
            return
        self._served[meter] = now
        c = self.he._need_client()
        end = min(o + n, len(self.image))
        for p in range(o, end, PIECE):
            c.publish(f"m/{meter}/o", b"D" + p.to_bytes(4, "big") + self.image[p:min(p + PIECE, end)],
                      qos=1)
            self.pieces_sent += 1


def sim_image(body: bytes, fault: int = 0) -> bytes:
    """An app image as the unix board's flash model checks it
    (boards/unix/ota_model.py): magic, the model's fault byte, length, body,
    SHA-256. For the simulator, the tests and the bench; a board takes the
    port's firmware.bin (its app image), docs/OTA.md §2."""
    import struct
    head = bytes((0xE9, fault, 0, 0)) + struct.pack("<I", len(body))
    return head + body + hashlib.sha256(head + body).digest()
