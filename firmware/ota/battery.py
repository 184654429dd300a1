# Firmware updates on a battery meter (docs/OTA.md §9). The radio is on
# only in reporting windows (firmware/window.py), so an update is carried
# by them: the same Updater and link side as on a mains board (ota/), with
# what a cell changes:
#
# - at every wake (attach): the slot that booted is checked against the
#   validated one, as at a mains boot; a record that says the new image is
#   switched to, on trial or being rechecked makes this wake open a window
#   at once, whatever the schedule: an image pending verify that reaches a
#   deep sleep unconfirmed is rolled back by the bootloader at the wake
#   after, so the switch, the first boot and the trial are one wake;
# - the rest of an update (the manifest's signature checked again, the
#   download, the hash of the slot) runs only in a window (open), and only
#   with the cell above both ota_min_mv (the divider) and ota_min_pct (the
#   charge count, power.py): a low cell pauses the update, it never runs
#   the valve's reserve down;
# - a window in which an update downloads or verifies stays open past its
#   usual end until the update's radio allowance for the local day,
#   RADIO_DAY_MS, is spent (the window's own time included), and steps the
#   link every STEP_MS instead of window.STEP_MS: the radio's on-time is
#   what an update costs the cell, the CPU is awake anyway;
# - a download that gets no piece in IDLE_WINDOWS windows in a row is
#   given up (a halted rollout; the version is not refused), since the
#   6 h stall timer of a mains board never runs out in a window.
from micropython import const

import codes
from ota import Ota
from power import RADIO_MA

RADIO_DAY_MS = const(120_000)   # an update's radio time per local day, windows included
STEP_MS = const(50)             # link step period while an update downloads or verifies
PIECE_WAIT_MS = const(15_000)   # no piece this long: this window stops waiting for the head-end
IDLE_WINDOWS = const(3)         # windows in a row without a piece: the download is given up
TRIAL_MAX_MS = const(330_000)   # a trial's window: the self-test's link wait (300 s) and its marking
_DAY_S = const(86400)
_IDLE = const(0)
_DOWNLOAD = const(1)
_VERIFY = const(2)
_TRIAL = const(4)
_RECHECK = const(5)
_FORCE = (3, 4, 5)              # SWITCHED, TRIAL, RECHECK: a window at this wake


class _Gate:
    """The battery as the Updater's manifest check sees it: the divider's
    reading, or 0 (flat) when the charge count is below ota_min_pct."""

    def __init__(self, meter, battery, min_pct):
        self._meter = meter
        self._battery = battery
        self._min_pct = min_pct

    def low(self):
        cell = self._meter.cell
        return cell is not None and cell.level_pct() < self._min_pct

    def millivolts(self):
        if self.low():
            return 0
        return self._battery.millivolts() if self._battery is not None else None


class BatteryOta(Ota):
    """The OTA path of one wake of a battery meter."""

    def __init__(self, updater, meter, hw, gate):
        super().__init__(updater, meter, hw)
        self.gate = gate
        self.force = updater.state in _FORCE
        self.opened = False
        self._link = None
        self._off = False         # the update stopped for this wake (its record cannot be written)
        self._t0 = None           # ticks_ms the window opened
        self._pieces = 0          # pieces taken in this window
        self._last_piece = None   # ticks_ms of the last one
        self._prepaid = 0         # uAs of radio counted in the cell ahead of this window's use
        self._booked = None       # (day, ms used before this window): the allowance written spent

    # ---------------- the window's side ----------------
    def no_link(self):
        """This wake's image could not make its link: a trial fails its link
        check at once (no window step would ever end it), as at a mains boot
        without one. Resumed first, as there: the switched image's first
        wake becomes its trial, and a trial on file while the old image runs
        (the bootloader rolled it back) is a rollback, not this image's
        trial to fail, which would reset into the same record again."""
        u = self.updater
        if self.force:
            self.resume()
        if u.state == _TRIAL:
            from ota import selftest
            u.confirm(selftest.LINK)
        if u.reset_due:
            self._reset()

    def open(self, link):
        """A window opens on `link`: resume the update (its signature checked
        again) unless the cell is too low, and listen for manifests and
        pieces. Returns self, or None when nothing is to be done."""
        u = self.updater
        clock = self.hw.clock
        self._t0 = self._last_piece = clock.ticks_ms()
        st = u.state
        if st != _IDLE and st not in _FORCE and self._cell_low():
            v = u.p.get("v", 0)
            if u.p.get("seen") != v:
                u._refused({"v": v}, codes.BATTERY_LOW)   # once per version: paused, not refused
                u._save()
            return None
        if st in (_DOWNLOAD, _VERIFY) and self.spent():
            return None              # today's allowance is spent: tomorrow's window goes on
        if st != _IDLE:
            self.resume()
        if u.reset_due:
            self._reset()
            return None
        u.announce()
        link.listen_ota(self, u.board)
        self._link = link
        self.opened = True
        return self

    def _failed(self, e):
        # the progress record cannot be written (a full or spoilt file
        # system: the flash is the customer's): this wake goes on without
        # the update, as one whose update could not start
        # (wake._ota_attach), never a wake that fails and saves nothing
        print("OTA stopped: %r" % e)
        self.meter.log.add(codes.EV_OTA, codes.STORAGE << 8 | codes.OTA_REFUSED)
        self._off = True
        if self._link is not None:
            self._link.ota = None

    def step(self, link):
        try:
            super().step(link)
        except Exception as e:  # noqa: BLE001 - the update is not the meter (a Reset passes)
            self._failed(e)

    def resume(self):
        """The update on file goes on at this wake (Updater.resume: the
        signature checked again, a rollback noted). A deep-sleep wake is no
        power cycle: not counted among the resumes."""
        u = self.updater
        why = self.hw.wake_reason
        try:
            u.resume(why == "power", why in ("power", "reset"))
        except Exception:  # noqa: BLE001 - a broken progress record must not stop the meter
            self.meter.log.add(codes.EV_OTA, codes.FORMAT << 8 | codes.OTA_REFUSED)
            u.p = {"st": _IDLE}
            u.doc = None

    def _cell_low(self):
        if self.gate.low():
            return True
        try:
            mv = self.gate.millivolts()
        except (OSError, ValueError):
            return True              # a failing ADC read: treated as a flat cell, as Updater.offer
        return mv is not None and mv < self.updater.min_mv

    def on_message(self, msg):
        if msg and msg[0] == 0x44 and len(msg) > 5:
            self._pieces += 1
            self._last_piece = self.hw.clock.ticks_ms()
        try:
            return super().on_message(msg)
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return None

    def _used_today(self):
        day = (self.meter.clock.time() + self.meter.cfg["tz"]) // _DAY_S
        b = self._booked
        if b is not None and b[0] == day:
            return b                 # the day's use before this window (on file: spent)
        bd = self.updater.p.get("bd")
        # (the record is the customer's to edit: a negative use would keep
        # the window open past any allowance)
        if isinstance(bd, list) and len(bd) == 2 and bd[0] == day and isinstance(bd[1], int) \
                and bd[1] >= 0:
            return day, bd[1]
        return day, 0

    def busy(self, on_ms):
        """Whether the window stays open for the update after on_ms of radio."""
        if self._off:
            return False
        try:
            keep = self._keep(on_ms)
            if keep:
                self._book()
            return keep
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return False

    def _book(self):
        # the radio the update may still keep on in this window is counted
        # before it is spent: in the cell's charge (the meter's state saved),
        # and for a download or a verify the day's allowance written spent.
        # A cell pulled in the window takes the wake's count with it, and
        # the power-on opens the next window at once: each pull was up to
        # RADIO_DAY_MS (a trial's TRIAL_MAX_MS) of radio the count never saw,
        # with the allowance whole again. close() gives back what was unused
        u = self.updater
        st = u.state
        cell = self.meter.cell
        # (a whole allowance, not the day's rest: a window that straddles
        # local midnight goes on with the new day's, up to RADIO_DAY_MS in
        # all, and the new day's allowance is written spent in its turn)
        if not self._prepaid and cell is not None:
            self._prepaid = (TRIAL_MAX_MS if st in _FORCE else RADIO_DAY_MS) * RADIO_MA
            cell.used += self._prepaid
            try:
                self.meter.save()
            except Exception:  # noqa: BLE001 - counted in RAM all the same
                pass
        if st == _DOWNLOAD or st == _VERIFY:
            today = self._used_today()
            if self._booked is None or self._booked[0] != today[0]:
                self._booked = today
                u.p["bd"] = [today[0], RADIO_DAY_MS]
                self._save()

    def _refund(self):
        cell = self.meter.cell
        if self._prepaid and cell is not None:
            # the wake counts the window's real radio time; a new cell's
            # `cell` op in this window restarted the count under the prepaid
            # part (a count below 0 would not restore)
            cell.used = cell.used - self._prepaid if cell.used > self._prepaid else 0
        self._prepaid = 0

    def _keep(self, on_ms):
        u = self.updater
        st = u.state
        if st in _FORCE:
            return on_ms < TRIAL_MAX_MS
        if st not in (_DOWNLOAD, _VERIFY) and not u.checking:
            return False
        if on_ms + self._used_today()[1] >= RADIO_DAY_MS:
            return False
        if st == _DOWNLOAD and not u.checking:
            quiet = self.hw.clock.ticks_diff(self.hw.clock.ticks_ms(), self._last_piece)
            return quiet < PIECE_WAIT_MS and not u._held()
        return not u._held()

    def step_ms(self, default):
        """The link's step period: short while flash is being written or
        hashed (a download, the slot's hash, the trial's hash of the running
        image), since the radio's on-time is the cost."""
        u = self.updater
        st = u.state
        fast = st == _DOWNLOAD or st == _VERIFY or u.checking or (st == _TRIAL and not u.trial_ready)
        return STEP_MS if fast else default

    def close(self, on_ms):
        """The window ends after on_ms of radio: the day's allowance and the
        windows without a piece are kept in the progress record."""
        self._refund()
        if self._off:
            return
        try:
            self._close(on_ms)
        except Exception as e:  # noqa: BLE001
            self._failed(e)

    def _close(self, on_ms):
        u = self.updater
        if u.state == _TRIAL or u.state == _RECHECK:
            self._unfinished()
            return
        if u.state == _IDLE or u.state in _FORCE:
            return
        day, used = self._used_today()
        u.p["bd"] = [day, used + on_ms]
        if u.state == _DOWNLOAD:
            u.p["nw"] = 0 if self._pieces else u.p.get("nw", 0) + 1
            if u.p["nw"] >= IDLE_WINDOWS:
                u._abandon(codes.TIMEOUT, burn=False)
                return
        self._save()

    def _save(self):
        # on file a download stands at its chunk's start, where the next
        # wake's hash begins (the offset in RAM may be inside it)
        u = self.updater
        if u.state != _DOWNLOAD:
            u._save()
            return
        o = u.p["o"]
        u.p["o"] = o - o % u.doc["cs"]
        u._save()
        u.p["o"] = o

    def _unfinished(self):
        # the window ended before the trial (or the old image's recheck)
        # came to its verdict: a network that holds each link step (a
        # connect dribbled to its timeout) outlasts TRIAL_MAX_MS. That is
        # the link not up in time, as when the self-test's own wait runs
        # out; left so, the image would sleep pending verify and the
        # bootloader's rollback at the next wake would count as its crash
        # (the version refused at the second)
        u = self.updater
        from ota import selftest
        if u.state == _RECHECK:
            self._trial_t0 = None
            u.rechecked(False)
        elif self._passed:
            u.confirm(0)             # the floor's save, then the marking
            u.confirm(0)
        else:
            u.confirm(selftest.LINK)
        if u.reset_due:
            self._reset()

    def spent(self):
        """The update's radio allowance for today is used up."""
        return self._used_today()[1] >= RADIO_DAY_MS

    def _reset(self):
        # this wake's charge (and its window's radio time so far) is counted
        # before the chip resets: the count would lose it otherwise
        self._refund()
        cell = self.meter.cell
        if cell is not None:
            clock = self.hw.clock
            radio = clock.ticks_diff(clock.ticks_ms(), self._t0) if self._t0 is not None else None
            cell.wake(self.meter.clock.time(), radio, 0, 0)
            self._t0 = None
        super()._reset()


def attach(meter, hw, board):
    """At every wake of a battery board with OTA slots: the boot-slot check,
    and whether this wake must open a window (`force`). Returns the
    BatteryOta, or None (no slots, or a broken record given up)."""
    if hw.partitions is None:
        return None
    from ota.updater import Updater
    cfg = meter.cfg
    gate = _Gate(meter, hw.battery, cfg.get("ota_min_pct", 0))
    u = Updater(meter, hw.partitions, board, hw.state_dir, gate, cfg.get("ota_min_mv", 0),
                hw.clock, meter.clock)
    o = BatteryOta(u, meter, hw, gate)
    if u.state == _IDLE:
        u._boot_slot()
        if u.reset_due:
            o._reset()             # the validated slot again, before anything else
    return o
