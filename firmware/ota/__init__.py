# Over-the-air firmware updates (docs/OTA.md). The link hands this package
# the messages of the OTA topics and calls step() once per link step; the
# Updater (ota/updater.py) does the work, bounded per call.
#
# Topics (docs/PROTOCOL.md §2): r/<r>/ota (retained manifest for the
# region), m/<id>/o (head-end -> meter: a manifest for this meter, or image
# pieces b"D" + offset u32 BE + bytes), m/<id>/or (meter -> head-end: the
# block it wants, JSON {"v","o","n"}).
import struct

import codes

TRIAL_WAIT_MS = const(300_000)
_TRIAL = const(4)                # updater.TRIAL
_RECHECK = const(5)              # updater.RECHECK (the updater module is imported only when attached)


class Ota:
    def __init__(self, updater, meter, hw):
        self.updater = updater
        self.meter = meter
        self.hw = hw
        self._trial_t0 = None
        self._passed = False          # this boot's trial passed its self-test: confirming

    def on_message(self, msg):
        """A message of r/<r>/ota/<board> or m/<id>/o."""
        if not msg:
            self.updater.halted()     # a cleared retained manifest: the rollout was halted
            return None
        if msg[0] == 0x44 and len(msg) > 5:   # b"D"
            self.updater.piece(struct.unpack_from(">I", msg, 1)[0], memoryview(msg)[5:])
            return None
        return self.updater.offer(msg)

    def step(self, link):
        """One bounded turn: a request out, a verify slice, the trial."""
        u = self.updater
        # read before this step's work: the step that ends the partition's
        # hash does not also run the self-test (each its own flash writes)
        trial = u.state == _TRIAL and u.trial_ready
        u.step()
        req = u.request()
        if req is not None and link.connected:
            link.publish_ota(req)
        if trial:
            self._trial(link)
        elif u.state == _RECHECK:
            self._recheck(link)
        if u.reset_due:
            self._reset()

    def _trial(self, link):
        # the self-test (its state check saves) in one step, the floor's
        # save in the next, the marking (otadata, the valid event, the
        # progress record) in the one after: the loop never waits on all
        # these flash writes in one step (docs/OTA.md §7)
        if self._passed:
            self.updater.confirm(0)
            return
        from ota import selftest
        rt = link.rt
        if self._trial_t0 is None:
            self._trial_t0 = rt.ticks_ms()
            failed = selftest.run(self.meter, self.hw, link)
        else:
            # checks 1-4 passed at the first call; the wait for the link
            # does not save the state again at every step
            failed = 0 if selftest.check(selftest.LINK, self.meter, self.hw, link) else selftest.LINK
        if failed == selftest.LINK and rt.ticks_diff(rt.ticks_ms(), self._trial_t0) < TRIAL_WAIT_MS:
            return                    # the link may still be connecting
        if failed:
            self.updater.confirm(failed)
        else:
            self._passed = True

    def _recheck(self, link):
        # the old image runs the check the new one failed (the link: waited for)
        from ota import selftest
        rt = link.rt
        if self._trial_t0 is None:
            self._trial_t0 = rt.ticks_ms()
        n = self.updater.p.get("sf", 0)
        ok = selftest.check(n, self.meter, self.hw, link)
        if not ok and n == selftest.LINK and rt.ticks_diff(rt.ticks_ms(), self._trial_t0) < TRIAL_WAIT_MS:
            return
        self._trial_t0 = None
        self.updater.rechecked(ok)

    def _reset(self):
        # the meter's state first: the image that boots next restores it
        try:
            self.meter.save()
        except Exception:  # noqa: BLE001 - the last periodic save stands
            pass
        if self.hw.reset is not None:
            self.hw.reset()


def attach(meter, hw, link, board):
    """The OTA path of a meter whose board has OTA slots, or None. Resumes
    an update that a reset interrupted. Without a link (this image could not
    make one) nothing is downloaded, and a trial fails its link check at
    once: no link step would ever end it."""
    parts = getattr(hw, "partitions", None)
    if parts is None:
        return None
    from ota.updater import Updater
    u = Updater(meter, parts, board, hw.state_dir, hw.battery, meter.cfg.get("ota_min_mv", 0),
                link.rt if link is not None else None)
    try:
        u.resume(hw.wake_reason == "power")
    except Exception:  # noqa: BLE001 - a broken progress record must not stop the meter
        meter.log.add(codes.EV_OTA, codes.FORMAT << 8 | codes.OTA_REFUSED)
        u.p = {"st": 0}
    o = Ota(u, meter, hw)
    if link is None and u.state == _TRIAL:
        from ota import selftest
        u.confirm(selftest.LINK)
    if u.reset_due:
        o._reset()                    # before any task starts: the validated slot again, or a failed trial
    if link is None:
        return None
    u.announce()
    link.listen_ota(o, board)
    return o
