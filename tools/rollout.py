"""Staged firmware rollout from the head-end (docs/OTA.md §6).

A Rollout publishes one office-signed manifest, retained on its region's
and board's `r/<r>/ota/<board>` (and on the region-wide `r/<r>/ota` the
images before board topics listen on, see `legacy_topic`), for group 1
(1 % of the fleet), then 2 (10 %), then 3 (all);
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
  halts only a group with fewer than `min_failed` members (SECURITY.md U24).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

if __name__ == "__main__":      # before the imports that only headend.py's sys.path satisfies
    from libscript import not_a_command
    not_a_command(__doc__, "tools/headend.py [--db DB --broker HOST:PORT --ca CA --user U --password P] "
                  "rollout {start,status,halt,resume,run} ...\n       "
                  "(.venv/bin/python tools/headend.py rollout start --help: its options)")

import codes
from sqlalchemy import select, update

from utility import schema as S
from utility.store import insert_ignore, upsert

PIECE = 2048                 # image bytes per message: under the meter's 4096-byte packet limit
GROUP_PERCENT = (0, 1, 10, 100)
# a meter's verdict "failed": its self-test failed, it rolled back (not after
# a power cut at the trial, detail 0: the meter tries again), its image
# did not hash, or the recheck on the old image failed too (tamper: the
# meter's hardware, a reader unplugged at the first boot; it is retried a
# day later, but until then the group must not go on as if it were busy)
FAILED = (codes.OTA_SELFTEST_FAILED, codes.OTA_ROLLED_BACK, codes.OTA_IMAGE_BAD, codes.OTA_TAMPER)

# In the head-end's store (utility/schema.py): rollouts, one row per rollout,
# its group and status; started is when the current group's manifest was
# published (the soak timer runs from it). rollout_plans: what a head-end
# needs to carry the rollout on after a restart: the image and the rules
# (JSON: threshold, min_valid, min_failed, busy_s, soak_s, block_gap_s, bat,
# cs, rb, since).
RULES = ("threshold", "min_valid", "min_failed", "busy_s", "soak_s", "block_gap_s", "bat", "cs", "rb")


def board_topic(region: int, board: str) -> str:
    """The retained manifest of one board's meters in a region
    (firmware/comms/codec.py ota_topic, docs/PROTOCOL.md §2)."""
    return f"r/{region}/ota/{board}"


def legacy_topic(region: int) -> str:
    """The region-wide manifest topic of the images before board topics
    (and of an emergency rollback to one of them, docs/OTA.md §5): it holds
    the manifest that went out last in the region, any board's; a halt puts
    back another board's running one, or clears it. Kept as long as such an
    image may run in the field (docs/OTA.md §4)."""
    return f"r/{region}/ota"


def board_problem(board: str) -> str | None:
    """Why a board name cannot name a manifest topic, or None."""
    if not board or len(board) > 32 or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in board):
        return f"board {board!r}: 1 to 32 letters, digits or _ (a board module's name)"
    return None


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
                 soak_s: float = 0, block_gap_s: float = 0.25, clock=time.time):
        if board_problem(board):
            raise ValueError(board_problem(board))
        self.he = headend
        self.image = image
        self.version, self.board, self.region = version, board, region
        self.bat, self.cs, self.rb = bat, cs, rb
        self.threshold = threshold
        self.min_valid = min_valid
        self.min_failed = min_failed
        self.busy_s = busy_s           # busy longer than this (last event received): stalled, not waited for
        self.soak_s = soak_s           # a group runs at least this long before the next one starts
        self.block_gap_s = block_gap_s  # one block per meter per this many seconds
        self.clock = clock
        self._served = {}              # meter -> clock() of the last block sent to it (a rate limit only)
        self.group = 0
        self.status = "new"
        self.started = 0.0             # clock() when the current group's manifest went out
        self.since = 0.0               # failures received before this (a resume) are not counted
        self.pieces_sent = 0
        headend.ota = self

    @staticmethod
    def _plan(headend, version, board, region):
        ro, rp = S.rollouts, S.rollout_plans
        q = (select(ro.c.grp, ro.c.status, ro.c.started, rp.c.image, rp.c.params)
             .join(rp, (rp.c.version == ro.c.version) & (rp.c.board == ro.c.board)
                   & (rp.c.region == ro.c.region))
             .where(ro.c.version == version, ro.c.board == board, ro.c.region == region))
        with headend.engine.connect() as c:
            return c.execute(q).first()

    @classmethod
    def load(cls, headend, version: int, board: str, region: int, clock=time.time) -> Rollout:
        """The rollout as the database holds it: a head-end that restarts
        carries on with the same group, status, timers and rules."""
        row = cls._plan(headend, version, board, region)
        if row is None:
            raise LookupError(f"no rollout of version {version} for {board} in region {region}")
        grp, status, started, image, params = row
        rules = json.loads(params)
        r = cls(headend, bytes(image), version, board, region, clock=clock,
                **{k: rules[k] for k in RULES})
        r.group, r.status, r.started, r.since = grp, status, started, rules["since"]
        return r

    @staticmethod
    def listed(headend) -> list[tuple]:
        """(version, board, region, group, status, started) of every rollout."""
        ro = S.rollouts
        with headend.engine.connect() as c:
            return [tuple(r) for r in c.execute(
                select(ro.c.version, ro.c.board, ro.c.region, ro.c.grp, ro.c.status, ro.c.started)
                .order_by(ro.c.started.desc()))]

    def refresh(self):
        """Group, status, timers and rules again from the database: another
        head-end process (the operator's halt, resume) may have changed them."""
        row = self._plan(self.he, self.version, self.board, self.region)
        self.group, self.status, self.started = row.grp, row.status, row.started
        rules = json.loads(row.params)
        for k in RULES:
            setattr(self, k, rules[k])
        self.since = rules["since"]

    # ---------------- the stages ----------------
    def _record(self):
        rules = {k: getattr(self, k) for k in RULES}
        rules["since"] = self.since
        key = {"version": self.version, "board": self.board, "region": self.region}
        with self.he.engine.begin() as c:
            upsert(c, S.rollouts, dict(key, grp=self.group, status=self.status,
                                       sha=hashlib.sha256(self.image).hexdigest(), started=self.started),
                   list(key), ["grp", "status", "sha", "started"])
            # the image is stored once; the rules change with a resume
            if not insert_ignore(c, S.rollout_plans, dict(key, image=self.image, params=json.dumps(rules))):
                rp = S.rollout_plans
                c.execute(update(rp).where(rp.c.version == self.version, rp.c.board == self.board,
                                           rp.c.region == self.region).values(params=json.dumps(rules)))

    def _publish(self, topic: str, payload: bytes, timeout=10):
        self.he._need_client().publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout)

    def _signed(self) -> bytes:
        doc = manifest(self.image, self.version, self.board, self.group, self.bat, self.cs, self.rb)
        return self.he.sign_doc(b"ota", doc)

    def _feed_legacy(self):
        """After a halt, legacy_topic gets the manifest of the region's
        newest other running rollout (another board's; listed() is newest
        first), read from the database (the halt may come from another
        process), or is cleared, as the board's topic is."""
        payload = b""
        for v, board, region, _, status, _ in Rollout.listed(self.he):
            if region == self.region and status == "running" and (v, board) != (self.version, self.board):
                payload = Rollout.load(self.he, v, board, region)._signed()
                break
        self._publish(legacy_topic(self.region), payload)

    def start(self, group: int = 1):
        self.group = group
        self.status = "running"
        self.started = self.clock()
        signed = self._signed()
        self._publish(board_topic(self.region, self.board), signed)
        self._publish(legacy_topic(self.region), signed)     # the latest out: for the older images
        self._record()

    def halt(self, why: str = "halted"):
        """No meter starts this version any more: its board's retained
        manifest is cleared (the region-wide one goes back to the newest
        other rollout's, or is cleared) and block requests go unanswered.
        Meters mid-download keep metering; they ask again with backoff and
        abandon nothing."""
        self.status = why
        self._publish(board_topic(self.region, self.board), b"")
        self._record()
        self._feed_legacy()

    def resume(self, threshold: float | None = None):
        """An operator carries on with a halted rollout (the failures were
        looked at: a bad batch of readers, not the image): the current
        group's manifest again, its soak from now, and only failures
        received from now on count."""
        if self.status == "done":
            raise ValueError("the rollout is done")
        if threshold is not None:
            self.threshold = threshold
        self.since = self.clock()
        self.start(self.group)

    # ---------------- what the fleet says ----------------
    def meters(self) -> list[str]:
        m = S.meters
        with self.he.engine.connect() as c:
            return c.execute(select(m.c.id).where(m.c.region == self.region)
                             .order_by(m.c.id)).scalars().all()

    def state_of(self, meter: str) -> str | None:
        """'valid', 'failed', 'busy', 'stalled' (busy, nothing new for
        busy_s), 'other' (it refused the manifest as wrong-board: the
        head-end does not know a meter's board, the meter does) or None
        (nothing reported) for this version, from the meter's newest ota
        event."""
        e = S.events
        with self.he.engine.connect() as c:
            rows = c.execute(select(e.c.arg, e.c.received).where(e.c.meter == meter,
                                                                 e.c.code == codes.EV_OTA)
                             .order_by(e.c.seq.desc())).all()
        for arg, received in rows:
            if arg >> 16 != self.version:
                continue
            step = arg & 0xFF
            if step == codes.OTA_REFUSED:
                if arg >> 8 & 0xFF == codes.WRONG_BOARD:
                    return "other"    # a meter of another board in the region: not a member
                continue          # not its group yet, its battery: no verdict on the image
            if step == codes.OTA_VALID:
                return "valid"
            # a rollback with detail 0: the power went during the trial (the
            # customer's switch as much as an outage); the meter tries again
            power_cut = step == codes.OTA_ROLLED_BACK and not arg >> 8 & 0xFF
            if step in FAILED and not power_cut:
                return "failed" if (received or 0) >= self.since else None
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
            s = self.state_of(m)
            if s == "other":
                continue          # neither waited for nor counted in the threshold
            out["members"] += 1
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
        elif (t["busy"] == 0 and t["valid"] >= min(self.min_valid, t["members"])
              and self.clock() - self.started >= self.soak_s):
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
        m = S.meters
        with self.he.engine.connect() as c:
            region = c.execute(select(m.c.region).where(m.c.id == meter)).scalar()
        if region != self.region:
            return                # another region's rollout (or an unknown meter)
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


# ---------------- the operator's command line: headend.py rollout ... ----------------
# Every command is its own head-end process: what a rollout is (image, rules,
# group, timers) lives in the database, so `run` can be stopped and started
# again, and `halt`/`resume` from another shell reach it within --every.

IMAGE_MAGIC = 0xE9              # an ESP app image's first byte (and the simulator's, sim_image)


# An ESP-IDF app image: a 24-byte image header (chip id at bytes 12-13), the
# first segment's 8-byte header, then that segment begins with the app
# descriptor (esp_app_desc_t), whose magic word is 0xABCD5432. The build's
# firmware.bin (bootloader, partition table and app, for the serial flash)
# also starts with 0xE9, its bootloader's, and has no descriptor there.
APP_DESC_MAGIC = (0xABCD5432).to_bytes(4, "little")


def esp_app_problem(image: bytes, board: str) -> str | None:
    """Why `image` is not an OTA app image for an ESP32 `board`; None when
    it is (or the board is the simulator's, whose image is sim_image's)."""
    if board.startswith("unix"):
        return None
    from flash import BOARDS, CHIP_BY_ID
    if board not in BOARDS or BOARDS[board][0] is None:
        return f"unknown board {board!r} (one of {', '.join(b for b in BOARDS if BOARDS[b][0])})"
    if image[32:36] != APP_DESC_MAGIC:
        return ("not an app image: no ESP-IDF app descriptor at byte 32. firmware.bin is the "
                "bootloader, partition table and app for the serial port; an update is the app "
                "alone: build-<BOARD>/micropython.bin (docs/OTA.md \"Shipping an update\")")
    chip_id = image[12] | image[13] << 8
    chip = CHIP_BY_ID.get(chip_id, f"chip-id-{chip_id}")
    if chip != BOARDS[board][0]:
        return f"built for {chip}, not for {board}'s {BOARDS[board][0]}"
    return None


class RolloutError(Exception):
    """A command the operator must correct (headend.py prints it, exit 2)."""


def add_parser(sub):
    """The `rollout` subcommand of tools/headend.py (docs/OTA.md §6)."""
    p = sub.add_parser("rollout", help="staged firmware rollout: start, status, halt, resume, run")
    rs = p.add_subparsers(dest="rollout_cmd", required=True)
    s = rs.add_parser("start", help="sign the image's manifest and publish it to its first group")
    s.add_argument("image", help="the app image file (the build's micropython.bin)")
    s.add_argument("--version", type=int, required=True, help="above every meter's floor")
    s.add_argument("--board", required=True, help="board module name (board.txt): esp32_devkitc, ...")
    s.add_argument("--region", type=int, required=True)
    s.add_argument("--group", type=int, choices=(1, 2, 3), default=1,
                   help="first group: 1 (1 %%), 2 (10 %%) or 3 (all); default 1")
    s.add_argument("--threshold", type=float, default=0.2,
                   help="halt when failures exceed this share of the meters that reported (0.2)")
    s.add_argument("--min-failed", type=int, default=3, help="and come from at least this many meters (3)")
    s.add_argument("--min-valid", type=int, default=1, help="valid meters a group needs before the next (1)")
    s.add_argument("--soak-hours", type=float, default=24.0, help="least time in a group (24)")
    s.add_argument("--busy-days", type=float, default=3.0,
                   help="a meter busy this long with nothing new no longer holds its group (3)")
    s.add_argument("--battery-mv", type=int, default=0, help="minimum battery for the update (0: none)")
    s.add_argument("--chunk", type=int, default=65536, help="chunk size of the manifest's digests")
    s.add_argument("--rollback", action="store_true",
                   help="an emergency rollback: the old image under a new, higher version, to all "
                        "groups at once; it replaces the board's running rollout in the region "
                        "(docs/OTA.md §5)")
    for name, what in (("status", "groups, state and tally"), ("halt", "stop: manifest cleared, no blocks"),
                       ("resume", "carry on a halted rollout; earlier failures no longer count")):
        q = rs.add_parser(name, help=what)
        q.add_argument("--version", type=int, required=name != "status")
        q.add_argument("--board", required=name != "status")
        q.add_argument("--region", type=int, required=name != "status")
        if name == "resume":
            q.add_argument("--threshold", type=float, help="a new failure threshold")
    q = rs.add_parser("run", help="serve the running rollouts' blocks and apply their rules")
    q.add_argument("--every", type=float, default=10.0, help="seconds between rule checks (10)")
    q.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")


def _percent(group):
    return f"{GROUP_PERCENT[group]} %" if group < 3 else "all"


def _line(r: Rollout) -> str:
    t = r.tally()
    soak = max(0.0, r.soak_s - (r.clock() - r.started)) if r.status == "running" else 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)) if r.started else "-"
    return (f"version {r.version} {r.board} region {r.region}: group {r.group} ({_percent(r.group)}) "
            f"{r.status} since {when}, soak {soak / 3600:.1f} h left; members {t['members']} "
            f"valid {t['valid']} failed {t['failed']} busy {t['busy']} stalled {t['stalled']}; "
            f"threshold {r.threshold:g} min_failed {r.min_failed}")


def _start_image(a) -> bytes:
    """The image and arguments of `rollout start`, checked before the broker is reached."""
    try:
        image = Path(a.image).read_bytes()
    except OSError as e:
        raise RolloutError(f"cannot read the image: {e}") from None
    if not image or image[0] != IMAGE_MAGIC:
        raise RolloutError(f"{a.image} is not an app image (first byte {IMAGE_MAGIC:#x})")
    why = esp_app_problem(image, a.board)
    if why:
        raise RolloutError(f"{a.image}: {why}")
    if not 0 < a.version < 1 << 32 or not 0 < a.threshold < 1 or a.min_failed < 1 or a.chunk % 4096:
        raise RolloutError("version 1..2^32-1, threshold between 0 and 1, min-failed >= 1, chunk a "
                           "multiple of 4096")
    return image


def _start(he, a, image):
    problem = board_problem(a.board)
    if problem:
        raise RolloutError(problem)
    for v, board, region, _, status, _ in Rollout.listed(he):
        if region == a.region and board == a.board and status == "running":
            if not a.rollback:
                raise RolloutError(f"version {v} for {board} is running in region {region}: halt it first "
                                   "(a board's manifest topic holds one rollout)")
            old = Rollout.load(he, v, board, region)
            old.status = "superseded"
            old._record()
    try:
        Rollout.load(he, a.version, a.board, a.region)
        raise RolloutError(f"version {a.version} for {a.board} in region {a.region} exists: resume it")
    except LookupError:
        pass
    r = Rollout(he, image, a.version, a.board, a.region, bat=a.battery_mv, cs=a.chunk, rb=int(a.rollback),
                threshold=a.threshold, min_valid=a.min_valid, min_failed=a.min_failed,
                busy_s=a.busy_days * 86400, soak_s=a.soak_hours * 3600)
    r.start(3 if a.rollback else a.group)
    print(_line(r))
    return 0


class _Serving:
    """What headend.HeadEnd.ota points at during `run`: each running
    rollout answers the block requests of its own version and region."""

    def __init__(self):
        self.rollouts = {}

    def serve(self, meter, payload):
        for r in list(self.rollouts.values()):
            r.serve(meter, payload)


def _run_rules(he, a):
    serving = _Serving()
    end = time.monotonic() + a.seconds if a.seconds else None
    print(f"serving rollouts from {he.db_name}, checking every {a.every:g} s", flush=True)
    try:
        while end is None or time.monotonic() < end:
            for v, board, region, _, status, _ in Rollout.listed(he):
                key = (v, board, region)
                r = serving.rollouts.get(key)
                if r is None and status == "running":
                    r = serving.rollouts[key] = Rollout.load(he, v, board, region)
                elif r is not None:
                    r.refresh()
                if r is None:
                    continue
                was = (r.group, r.status)
                r.check()
                if (r.group, r.status) != was:
                    print(_line(r), flush=True)
                if r.status != "running":
                    del serving.rollouts[key]
            he.ota = serving
            time.sleep(a.every if end is None else max(0.0, min(a.every, end - time.monotonic())))
    except KeyboardInterrupt:
        pass
    return 0


def command(he, a) -> int:
    """headend.py rollout <start|status|halt|resume|run>: he not yet connected."""
    if a.rollout_cmd == "status":
        rows = [row for row in Rollout.listed(he)
                if all(want is None or want == got for want, got in
                       ((a.version, row[0]), (a.board, row[1]), (a.region, row[2])))]
        for v, board, region, *_ in rows:
            print(_line(Rollout.load(he, v, board, region)))
        if not rows:
            print("no rollout")
        return 0
    if a.rollout_cmd in ("halt", "resume"):
        try:
            r = Rollout.load(he, a.version, a.board, a.region)
        except LookupError as e:
            raise RolloutError(str(e)) from None
        if a.rollout_cmd == "resume" and r.status != "halted":
            raise RolloutError(f"version {a.version} is {r.status}, not halted")
    image = _start_image(a) if a.rollout_cmd == "start" else None
    with he:
        if a.rollout_cmd == "start":
            return _start(he, a, image)
        if a.rollout_cmd == "halt":
            r.halt("halted")
        elif a.rollout_cmd == "resume":
            r.resume(a.threshold)
        else:
            return _run_rules(he, a)
        print(_line(r))
        return 0


def sim_image(body: bytes, fault: int = 0) -> bytes:
    """An app image as the unix board's flash model checks it
    (boards/unix/ota_model.py): magic, the model's fault byte, length, body,
    SHA-256. For the simulator, the tests and the bench; a board takes the
    build's micropython.bin (the app image; not firmware.bin), docs/OTA.md §2."""
    import struct
    head = bytes((0xE9, fault, 0, 0)) + struct.pack("<I", len(body))
    return head + body + hashlib.sha256(head + body).digest()
