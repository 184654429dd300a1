# Firmware updates through the ESP32's OTA slots (docs/OTA.md §3, the state
# machine). The board hands in `parts`, esp32.Partition or the unix model of
# it; the link hands in messages and sends what request() returns.
#
# One owner: the Updater owns the update's progress, kept in its own
# two-copy CRC store (<state_dir>/ota.0|1, storage/state.py) and written at
# chunk boundaries only; the meter owns the version floor (Meter.fw_floor,
# in the meter's state). RAM: one 4096-byte block buffer and one running
# SHA-256. A step does at most one flash operation: a block's erase
# (ioctl(6), while its pieces are on their way) or its program
# (writeblocks(n, buf, 0), which does not erase), or a progress record,
# never two of them.
#
# MicroPython's hashlib cannot save a running hash, so a download resumes
# at the start of the chunk it was in: each chunk's digest is in the signed
# manifest, the chunk is hashed as it is written, and a chunk that does not
# match is fetched again. The whole image's SHA-256 is then computed from
# flash (what was written, not what was received) before set_boot.
import hashlib

import codes
from ota import manifest as mf
from storage.state import StateStore

BLOCK = const(4096)
IDLE = const(0)
DOWNLOAD = const(1)
VERIFY = const(2)      # all chunks written: hashing the slot back from flash
SWITCHED = const(3)    # set_boot done, waiting for the reset
TRIAL = const(4)       # the new image runs, not yet confirmed
RECHECK = const(5)     # rolled back after a peripheral check failed: that check runs on the old image

REQUEST_MS = const(10_000)     # a block not complete by then is asked for again
REQUEST_GAP_MS = const(300)    # requests at least this far apart: the head-end serves a meter one
                               # block per block_gap_s (0.25 s, tools/rollout.py) and drops the rest
VERIFY_BLOCKS = const(4)       # flash blocks hashed back per step
MAX_CHUNK_RETRIES = const(3)   # a chunk failing its digest this often: update abandoned
SIG_WINDOWS = const(2)         # signature windows per step: 25-53 ms of a 1.6-3.4 s verify on an ESP32
MAX_TRIALS = const(2)          # trials a watchdog or crash cut short before the version is refused (power cuts: retried at once this often, then daily)
STALL_MS = const(21_600_000)   # a download with no piece for 6 h is given up (a halted rollout)
RETRY_MS = const(86_400_000)   # after a peripheral self-test failure the trial is tried again a day later
MAX_PERIPHERAL = const(3)      # peripheral failures (old image passing the check) before the version is refused
MAX_RESUMES = const(3)         # boots resuming the same chunk before the next one waits RESUME_HOLD_MS
RESUME_HOLD_MS = const(3_600_000)   # ... so a relay cycling the power erases a block at most ~24 times a day


class Updater:
    def __init__(self, meter, parts, board, state_dir, battery=None, min_mv=0, rt=None, wall=None):
        import time
        self.meter = meter
        self.parts = parts
        self.board = board
        self.battery = battery
        self.min_mv = min_mv
        self.rt = rt or time
        self.store = StateStore(state_dir, "ota")
        self.p = self.store.load() or {"st": IDLE}
        self.buf = bytearray(BLOCK)
        self.have = 0            # bytes of the current block received
        self.doc = None          # the manifest being applied (dict)
        self._hash = None        # SHA-256 of the current chunk, or of the image (VERIFY)
        self._chunk = None       # VERIFY: SHA-256 of the chunk being read back
        self._spoilt = None      # VERIFY: a chunk that no longer reads back as written
        self._asked = None       # ticks_ms of the last request
        self._last_req = None    # ... the same, kept when a block ends (the gap to the next one)
        self._ready = False      # the block buffer holds a whole block, not yet programmed
        self._erased = -1        # the block erased and not yet programmed
        self._save_due = False   # a chunk ended: its progress record is written next step
        self._checking = None    # (verify generator, doc, body, sig) of a manifest being checked
        self._forged = None      # SHA-256 of the last manifest (body, signature) that failed
        self._next = None        # the newest manifest that came during a check or a trial, offered after it
        self._target = None
        self._piece_t = None     # ticks_ms of the last piece (or of the download's start)
        self._hold = None        # ticks_ms before which a VERIFY after a peripheral failure waits
        self.trial_ready = False # TRIAL: the running partition hashed and equal to the manifest's h
        self.blocks_written = 0
        self.reset_due = False   # True: the meter should save and reset (set_boot done / trial failed)
        # a battery board (ota/battery.py): its ticks start again at every
        # deep-sleep wake, so a hold is also kept on file, in wall-clock
        # seconds (p["hu"]), and restored by resume()
        self.wall = wall

    @property
    def state(self):
        return self.p["st"]

    @property
    def checking(self):
        """A manifest's signature is being verified, or a manifest waits to
        be offered (idle until both end)."""
        return self._checking is not None or self._next is not None

    def _event(self, step, detail=0):
        v = self.p.get("v", 0) if self.doc is None else self.doc["v"]
        self.meter.log.add(codes.EV_OTA, v << 16 | detail << 8 | step)

    def _save(self):
        self.store.save(self.p)

    # ---------------- at boot ----------------
    def resume(self, power_on=False, cold=True):
        """After a reset: go on with a download, confirm a trial or note a
        rollback. Runs once from boot, after the meter's state is restored.
        The manifest's signature is checked again (the flash is the
        customer's), once per boot. power_on: this boot is a power-on (the
        chip's reset cause), not a watchdog, a crash or a reset. cold:
        False for a battery board's deep-sleep wake, which is no power
        cycle (the resume is not counted against MAX_RESUMES)."""
        st = self.p["st"]
        if st == IDLE:
            self._boot_slot()
            return
        for k in _COUNTS:
            # a count edited below 0 (the record is CRC only) would lift the
            # bound it keeps: the resumes' hold (wear), the power cuts' day
            if self.p.get(k, 0) < 0:
                self.p[k] = 0
        running = self.parts(self.parts.RUNNING).info()[4]
        if not self._load_doc(st != DOWNLOAD):
            return
        frm = self.p.get("from")
        if frm is not None and (frm == self.p["slot"] or running not in (frm, self.p["slot"])):
            # the record does not fit the slots: not an update this meter made
            self._abandon(codes.FORMAT)
            return
        if st == RECHECK:
            return                      # Ota.step runs the check again
        if st != DOWNLOAD and running == self.p["slot"]:
            # the new image runs (a cut between set_boot and the progress
            # save leaves VERIFY on file: the slot that booted says more)
            self.p["st"] = TRIAL
            self._save()
            self._event(codes.OTA_TRIAL)
            self._start_stage()
            return
        if (st == SWITCHED or st == TRIAL) and power_on and not self.p.get("sf"):
            # the power went during the trial: the customer's switch as much
            # as an outage, not the image's fault, so never counted against
            # it; tried again at once MAX_TRIALS times, then once a day (the
            # otadata writes of a switch are not a relay's to repeat)
            self.p["pc"] = self.p.get("pc", 0) + 1
            self._event(codes.OTA_ROLLED_BACK, 0)
            self.p["st"] = VERIFY
            if self.p["pc"] > MAX_TRIALS:
                self._set_hold(RETRY_MS)
            self._save()
            self._start_stage()
            return
        if st == SWITCHED or st == TRIAL:
            # the bootloader booted the old image: the new one never
            # confirmed (a watchdog, a crash: the image's fault)
            self.p["tries"] = self.p.get("tries", 0) + 1
            self._event(codes.OTA_ROLLED_BACK, self.p["tries"])
            sf = self.p.get("sf")
            if sf in _PERIPHERAL:
                # a reader or valve cable pulled at the first boot looks like
                # a broken image: the old image runs the same check first
                self.p["st"] = RECHECK
                self._save()
                return
            if sf or self.p["tries"] >= MAX_TRIALS:
                self._abandon(codes.REFUSED)
                return
            self.p["st"] = VERIFY       # the image is still in its slot: check it again
            self._save()
        if self.p["st"] == DOWNLOAD:
            self._event(codes.OTA_RESUMED, self.p["o"] * 100 // self.doc["sz"])
            # a resume erases the chunk's blocks again: counted until a chunk
            # ends, so cycling the power cannot wear the slot out
            if cold:
                self.p["rs"] = self.p.get("rs", 0) + 1
                if self.p["rs"] > MAX_RESUMES:
                    self._set_hold(RESUME_HOLD_MS)
                self._save()
        self._start_stage()
        self._restore_hold()

    def _set_hold(self, ms):
        """Nothing erased or switched before ms from now (kept on file on a
        battery board: saved with the record's next write)."""
        self._hold = self.rt.ticks_add(self.rt.ticks_ms(), ms)
        if self.wall is not None:
            self.p["hu"] = self.wall.time() + ms // 1000

    def _restore_hold(self):
        # a battery board's hold from an earlier wake, at most as long as
        # any hold is (a clock set back does not extend it)
        hu = self.p.get("hu")
        if self.wall is None or not isinstance(hu, int):
            return
        now = self.wall.time()
        left = hu - now
        if left <= 0:
            self.p.pop("hu")
            return
        if left > RETRY_MS // 1000:
            # further ahead than any hold: a clock set back since, or the
            # record edited (it is the customer's); on file a day from now,
            # or each window would hold a day again, for ever
            left = RETRY_MS // 1000
            self.p["hu"] = now + left
        self._hold = self.rt.ticks_add(self.rt.ticks_ms(), left * 1000)

    def _boot_slot(self):
        """No update under way: the slot that booted must be the one the
        floor's version was validated in (`Meter.fw_slot`, in the meter's
        CRC state beside the floor, not in this record, which a customer
        can garble). Another one means otadata was erased or an older copy
        put back, and the older image in it would run above the floor:
        set_boot back to the validated slot and reset. If that image no
        longer checks, the older one keeps metering, reported (SECURITY.md
        U19). No slot yet (never updated): nothing older to run."""
        run = self.parts(self.parts.RUNNING)
        label = run.info()[4]
        if self.meter.fw_slot is None:
            return
        if label == self.meter.fw_slot:
            # set_boot back to it left it pending verify (a write only then)
            try:
                self.parts.mark_app_valid_cancel_rollback()
            except OSError:
                pass                  # the IDF's "running firmware is factory": nothing pending
            return
        v = self.meter.fw_floor << 16 | codes.OTA_WRONG_SLOT
        try:
            run.get_next_update().set_boot()
        except OSError:
            self.meter.log.add(codes.EV_OTA, v | codes.FORMAT << 8)
            return
        self.meter.log.add(codes.EV_OTA, v)
        self.reset_due = True

    def _load_doc(self, switched):
        """The manifest on file, signature checked again, or False (record
        given up). Its version must be above the floor; equal only once the
        image is written (a cut between the floor's save and the record's:
        the trial is done again, the running partition hashed)."""
        body = self.p["m"].encode()
        import binascii
        sig = binascii.unhexlify(self.p["sig"])
        code, d = mf.parse(body)
        import authority
        if code != codes.ACCEPTED or not authority.verify(self.meter.office, b"ota", body, sig):
            self._abandon(codes.SIGNATURE)
            return False
        floor = self.meter.fw_floor
        if d["v"] < floor or (d["v"] == floor and not switched):
            self._abandon(codes.OLD)
            return False
        self.doc = d
        return True

    def _start_stage(self):
        run = self.parts(self.parts.RUNNING)
        self._target = run.get_next_update()
        st = self.p["st"]
        if st == DOWNLOAD:
            self.have = 0
            self._ready = False
            self._hash = hashlib.sha256()
            self._asked = None
            self._piece_t = self.rt.ticks_ms()
        elif st == VERIFY:
            self.p["o"] = 0
            self._hash = hashlib.sha256()
            self._chunk = hashlib.sha256()
        elif st == TRIAL:
            # a record can claim a trial while the old image runs: the
            # running partition is hashed before anything is confirmed
            self._target = run
            self.p["o"] = 0
            self._hash = hashlib.sha256()
            self.trial_ready = False

    def _abandon(self, code, burn=True):
        """The update ends. burn: its version is refused from now on (not
        for a stalled download or a fault of the meter's hardware)."""
        self._event(codes.OTA_IMAGE_BAD if code in (codes.CRC, codes.SIGNATURE) else codes.OTA_REFUSED,
                    code)
        bad = self.p.get("v", 0) if burn else self.p.get("bad", 0)
        self.p = {"st": IDLE, "bad": bad, "rv": self.p.get("rv", -1)}
        self.doc = None
        self._save()

    # ---------------- a manifest arrives ----------------
    def offer(self, msg):
        """A manifest from the link. Returns the result code of the cheap
        checks; ACCEPTED means its signature is checked next, in slices of
        SIG_WINDOWS windows a step (event accepted or refused then)."""
        if self._checking is not None:
            self._next = bytes(msg)  # offered when this check ends (the newest one only)
            return codes.ACCEPTED
        st = self.p["st"]
        if st == DOWNLOAD and self._stalled():
            self._abandon(codes.TIMEOUT, burn=False)
            st = IDLE
        if st != IDLE:
            if self.doc is not None and _same(self.p, msg):
                return codes.USED
            if st not in (DOWNLOAD, VERIFY, RECHECK):
                # SWITCHED, TRIAL: nothing starts before this update confirms
                # or rolls back. A retained manifest comes once a connection,
                # so the newest is kept and offered when the updater can
                # take it (the next release arriving during a trial)
                self._next = bytes(msg)
                return codes.ACCEPTED
            # an unfinished update gives way to a higher signed version
            # (the office's fix after a halt); checked like any manifest
            floor = self.p["v"]
        else:
            floor = self.meter.fw_floor
        try:
            mv = self.battery.millivolts() if self.battery is not None else None
        except (OSError, ValueError):
            mv = 0                   # a failing ADC read: treated as a flat battery
        slot = self.parts(self.parts.RUNNING).get_next_update().info()[3]
        code, d, body, sig = mf.admit(msg, self.board, floor, slot,
                                      self.meter.cfg["meter_id"], mv, self.min_mv,
                                      self.p.get("bad", 0))
        if code == codes.ACCEPTED and _digest(body, sig) == self._forged:
            code = codes.SIGNATURE   # the same forgery again (a retained one): not verified twice
        if code != codes.ACCEPTED:
            if st == IDLE:
                self._refused(d, code)
            return code if st == IDLE else codes.REFUSED
        import authority
        self._checking = (authority.signer_steps(self.meter.office, b"ota", body, sig, SIG_WINDOWS),
                          d, body, sig)
        return code

    def _refused(self, d, code):
        if d is not None and d.get("v") != self.p.get("seen"):
            # once per version: a retained manifest comes at every connection
            self.p["seen"] = d["v"]
            self.meter.log.add(codes.EV_OTA, d["v"] << 16 | code << 8 | codes.OTA_REFUSED)

    def _check_step(self):
        gen, d, body, sig = self._checking
        rev = next(gen)
        if rev is None:
            return                   # more slices to go
        self._checking = None
        if not rev:
            self._forged = _digest(body, sig)
            self._refused(d, codes.SIGNATURE)
            return                   # step() offers a manifest kept meanwhile
        import binascii
        run = self.parts(self.parts.RUNNING)
        self.doc = d
        if self.p["st"] not in (IDLE, DOWNLOAD, VERIFY, RECHECK):
            return                   # a switch happened during the check: the newer one comes again
        self._erased = -1
        self._save_due = False
        self._hold = None
        self.p = {"st": DOWNLOAD, "v": d["v"], "m": body.decode(), "sig": binascii.hexlify(sig).decode(),
                  "o": 0, "slot": run.get_next_update().info()[4], "from": run.info()[4],
                  "bad": self.p.get("bad", 0), "rv": self.p.get("rv", -1)}
        self._save()
        self._event(codes.OTA_ACCEPTED)
        self._start_stage()

    # ---------------- the download ----------------
    def request(self):
        """What the link should publish now on the request topic, or None:
        the next block, again after REQUEST_MS without it."""
        if self.p["st"] != DOWNLOAD or self.doc is None or self._ready or self._held():
            return None
        now = self.rt.ticks_ms()
        if self._asked is not None and self.rt.ticks_diff(now, self._asked) < REQUEST_MS:
            return None
        if self._last_req is not None and self.rt.ticks_diff(now, self._last_req) < REQUEST_GAP_MS:
            return None              # too soon: the head-end would drop it, and we would wait REQUEST_MS
        self._asked = self._last_req = now
        self.have = 0
        o = self.p["o"]
        n = min(BLOCK, self.doc["sz"] - o)
        return b'{"v":%d,"o":%d,"n":%d}' % (self.doc["v"], o, n)

    def piece(self, offset, data):
        """Bytes of the image at offset (a piece of the block asked for).
        Pieces of other blocks, or repeated ones, are ignored."""
        if self.p["st"] != DOWNLOAD or self.doc is None or self._ready:
            return
        o = self.p["o"]
        n = min(BLOCK, self.doc["sz"] - o)
        if offset != o + self.have or self.have + len(data) > n:
            return
        self.buf[self.have:self.have + len(data)] = data
        self.have += len(data)
        self._piece_t = self.rt.ticks_ms()
        self._ready = self.have == n     # programmed by the next step()

    def _held(self):
        return self._hold is not None and self.rt.ticks_diff(self.rt.ticks_ms(), self._hold) < 0

    def _stalled(self):
        return self._piece_t is not None and \
            self.rt.ticks_diff(self.rt.ticks_ms(), self._piece_t) > STALL_MS

    def _download_step(self):
        # one flash operation per step: erase the block being fetched while
        # its pieces are on their way, or program the block that is complete
        if self._stalled():
            self._abandon(codes.TIMEOUT, burn=False)   # halted rollout: a later offer starts again
            return
        if self._held():
            return                   # resumed too often at this chunk: no erase yet
        blk = self.p["o"] // BLOCK
        if self._erased != blk:
            self._target.ioctl(6, blk)
            self._erased = blk
            return
        if self._ready:
            self._block_done(min(BLOCK, self.doc["sz"] - self.p["o"]))

    def _block_done(self, n):
        buf = self.buf
        for i in range(n, BLOCK):
            buf[i] = 0xFF            # the erased state beyond the image's end
        mv = memoryview(buf)
        self._hash.update(mv[:n])
        d = self.doc
        o = self.p["o"]
        self._target.writeblocks(o // BLOCK, buf, 0)
        self._erased = -1            # programmed: a block fetched again is erased again
        self.blocks_written += 1
        o += n
        self.have = 0
        self._ready = False
        self._asked = None           # ask for the next block at once
        cs = d["cs"]
        if o % cs and o != d["sz"]:
            self.p["o"] = o          # within a chunk: nothing persisted
            return
        i = (o - 1) // cs
        import binascii
        if binascii.hexlify(self._hash.digest()).decode() != d["ch"][i]:
            self.p["cr"] = self.p.get("cr", 0) + 1
            self._event(codes.OTA_CHUNK_BAD, i & 0xFF)
            if self.p["cr"] >= MAX_CHUNK_RETRIES:
                self._abandon(codes.CRC)
                return
            self.p["o"] = i * cs     # the chunk again, from its start
        else:
            self.p["o"] = o
            self.p["rs"] = 0         # a chunk ended: resumes count again from here
            if o == d["sz"]:
                self.p["st"] = VERIFY
        self._save_due = True        # in the next step: one flash operation per step
        self._start_stage()

    # ---------------- verify, switch ----------------
    def step(self):
        """Bounded work outside the messages, once per link step: one flash
        erase or program while downloading; VERIFY_BLOCKS blocks hashed back
        from flash, then set_boot."""
        if self._checking is not None:
            self._check_step()
            return
        if self._next is not None and self.p["st"] in (IDLE, DOWNLOAD, VERIFY, RECHECK):
            nxt, self._next = self._next, None
            self.offer(nxt)          # kept during a check or a trial
            return
        if self.doc is None:
            return
        if self._save_due:
            self._save_due = False
            self._save()
            return
        st = self.p["st"]
        if st == DOWNLOAD:
            self._download_step()
            return
        if st == TRIAL and not self.trial_ready:
            self._trial_hash_step()
            return
        if st != VERIFY or self._held():
            return
        more = self._hash_step()
        if self._spoilt is not None:
            # a chunk that matched its digest when it was written does not
            # read back so: the slot was written over since (the customer's
            # flash between two wakes, a failing sector), not the image's
            # fault, which refusing it would make the meter's to keep old
            # firmware by; the download goes on again from that chunk
            i, self._spoilt = self._spoilt, None
            self._event(codes.OTA_CHUNK_BAD, i & 0xFF)
            self.p["st"] = DOWNLOAD
            self.p["o"] = i * self.doc["cs"]
            self._save()
            self._start_stage()
            return
        if more:
            return
        import binascii
        if binascii.hexlify(self._hash.digest()).decode() != self.doc["h"]:
            self._abandon(codes.CRC)
            return
        try:
            self._target.set_boot()
        except OSError:
            self._abandon(codes.FORMAT)   # the chip's own image check refused it
            return
        self.p["st"] = SWITCHED
        self._save()
        self._event(codes.OTA_SWITCHED)
        self.reset_due = True

    def _hash_step(self):
        """VERIFY_BLOCKS blocks of the target hashed; True while more remain."""
        d = self.doc
        o = self.p["o"]
        for _ in range(VERIFY_BLOCKS):
            if o >= d["sz"]:
                break
            self._target.readblocks(o // BLOCK, self.buf)
            n = min(BLOCK, d["sz"] - o)
            mv = memoryview(self.buf)[:n]
            self._hash.update(mv)
            o += n
            c = self._chunk
            if c is not None:
                # VERIFY: each chunk against its signed digest too, so a
                # mismatch says which chunk changed since it was written
                c.update(mv)
                if o % d["cs"] == 0 or o == d["sz"]:
                    i = (o - 1) // d["cs"]
                    import binascii
                    if binascii.hexlify(c.digest()).decode() != d["ch"][i]:
                        self._spoilt = i
                        return False
                    self._chunk = hashlib.sha256()
        self.p["o"] = o
        return o < d["sz"]

    def _trial_hash_step(self):
        if self._hash_step():
            return
        import binascii
        if binascii.hexlify(self._hash.digest()).decode() != self.doc["h"]:
            # not the signed image that runs (a record that lies): nothing
            # is confirmed, the version not refused; a real trial's reset
            # goes back to the old image
            self._abandon(codes.CRC, burn=False)
            self.reset_due = True
            return
        self.trial_ready = True

    # ---------------- the first boot of the new image ----------------
    def confirm(self, failed_check):
        """The trial's self-test result: 0 passed, else the number of the
        check that failed (ota/selftest.py). Passed: the version floor goes
        up (its state save is this call's flash write), then, at the next
        call, the image is marked valid. Failed: a reset, and the
        bootloader goes back to the old image."""
        if self.p["st"] != TRIAL:
            return
        if failed_check:
            # on file before the reset: the old image then gives this
            # version up at once (a trial cut short is tried again instead)
            self.p["sf"] = failed_check
            self._save()
            self._event(codes.OTA_SELFTEST_FAILED, failed_check)
            self.reset_due = True
            return
        if not self.trial_ready:
            return                   # the running partition is still being hashed
        v = self.doc["v"]
        if v > self.meter.fw_floor:
            if self.meter.raise_fw_floor(v, self.p["slot"]) != codes.ACCEPTED:
                self.reset_due = True    # not durable: do not confirm; the old image returns
            return                   # marked valid at the next call (a step of its own)
        if v < self.meter.fw_floor:
            self._abandon(codes.OLD)
            return
        self.parts.mark_app_valid_cancel_rollback()
        self._event(codes.OTA_VALID)
        self.p = {"st": IDLE, "rv": self.p.get("rv", -1)}
        self.doc = None
        self._save()

    def rechecked(self, passed):
        """RECHECK: the check the trial failed, run on the old image. It
        passes here: the new image may be at fault (refused after
        MAX_PERIPHERAL such failures). It fails here too: the meter's
        hardware is (a cable pulled), event OTA_TAMPER, the version is kept.
        Either way the trial is tried again RETRY_MS later."""
        sf = self.p.pop("sf")
        if passed:
            self.p["pf"] = self.p.get("pf", 0) + 1
            if self.p["pf"] >= MAX_PERIPHERAL:
                self._abandon(codes.REFUSED)
                return
        else:
            self._event(codes.OTA_TAMPER, sf)
        self.p["st"] = VERIFY
        self.p["tries"] = 0
        self._set_hold(RETRY_MS)
        self._save()
        self._start_stage()

    def halted(self):
        """The rollout was halted: a trial held for a retry is not tried
        again (its version is not refused: a later rollout may bring it).
        A manifest kept for later goes too: the office withdrew it."""
        self._next = None
        if self.p["st"] == RECHECK or (self.p["st"] == VERIFY and self._hold is not None):
            self._hold = None
            self._abandon(codes.REFUSED, burn=False)

    def running_version(self):
        """The version of the image that runs: the trial's, else the floor
        (0: the image the meter left the factory with)."""
        return self.p["v"] if self.p["st"] == TRIAL else self.meter.fw_floor

    def announce(self):
        """EV_OTA / OTA_RUNNING when the running version is not the one
        last announced: the head-end learns every meter's version from its
        event stream (docs/OTA.md §4)."""
        v = self.running_version()
        if self.p.get("rv", -1) != v:
            self.p["rv"] = v
            self._save()
            self.meter.log.add(codes.EV_OTA, v << 16 | self.p["st"] << 8 | codes.OTA_RUNNING)

    def progress(self):
        """Per cent of the image written (0 outside a download)."""
        d = self.doc
        if d is None or self.p["st"] != DOWNLOAD:
            return 100 if self.p["st"] in (VERIFY, SWITCHED, TRIAL, RECHECK) else 0
        return self.p["o"] * 100 // d["sz"]


_COUNTS = ("rs", "pc", "tries", "pf", "cr", "nw")   # the record's counters, each bounding a retry
_PERIPHERAL = (4, 3, 5)   # selftest CARD, VALVE, LINK: hardware outside the board a customer can unplug


def _digest(body, sig):
    h = hashlib.sha256(body)
    h.update(sig)
    return h.digest()


def _same(p, msg):
    return bytes(msg).startswith(p["m"].encode())
