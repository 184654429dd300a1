# What the customer sees: the page in view, a card tap's or an emergency
# request's result for a few seconds, and sleep after a quiet spell.
#
# One owner: the Display object, driven from the firmware's loop (card and
# button tasks, and its own task). The meter is only read; the event log
# tells it of credits and refusals from any source.
import codes
import units
from display import glass as G
from display import pages

RESULT_MS = const(5000)    # a result stays this long, then the page returns
REFRESH_MS = const(500)    # the display task's period: figures follow the meter


class Display:
    def __init__(self, screen, meter, clock, battery=None):
        self.screen = screen
        self.meter = meter
        self.clock = clock
        self.battery = battery
        self.page = pages.BALANCE
        self.last_topup = None     # (amount, result) of the newest credit or refusal
        self._result = None        # (text, icons) shown instead of the page ...
        self._result_at = 0        # ... since this ticks_ms
        self._active_at = clock.ticks_ms()
        self._credit = (0, 0)      # (event seq, amount) of the newest credit
        meter.log.listeners.append(self._event)
        self.refresh()

    def _event(self, ev):
        # from inside the meter's operations: note it, draw at the next step
        code, arg = ev[2], ev[3]
        if code == codes.EV_CREDIT:
            self.last_topup = (arg, codes.ACCEPTED)
            self._credit = (ev[0], arg)
        elif code == codes.EV_CREDIT_REJECTED:
            self.last_topup = (0, arg)

    def _sleep_ms(self):
        return self.meter.cfg["display_sleep_s"] * 1000

    def _touch(self):
        # after show(): a sleeping screen wakes with the new content
        self._active_at = self.clock.ticks_ms()
        if self.screen.asleep:
            self.screen.wake()

    def _show_result(self, text, icons):
        self._result = (text, icons | pages.status_icons(self.meter))
        self._result_at = self.clock.ticks_ms()
        self.screen.show(*self._result)
        self._touch()

    # -- what the user's tasks call ------------------------------------------
    def tap(self, code, since):
        """A card tap ended with result code: show it now, with the credit
        it applied (a credit logged after event seq `since`, when the tap
        began; one tap applies at most one)."""
        if code == codes.ACCEPTED:
            seq, amount = self._credit
            text = pages.line("A", units.money(amount if seq > since else 0))
            icons = G.CARD | G.MONEY
        else:
            text, icons = pages.error(code), G.CARD
        self._show_result(text, icons)

    def emergency(self, code):
        """The long press's answer: the credit granted, or why not."""
        if code == codes.ACCEPTED:
            self._show_result(pages.line("EC", units.money(self.meter.emergency_owed)), G.MONEY)
        else:
            self._show_result(pages.error(code), 0)

    def press(self):
        """A short press with no reopening awaited: the first press wakes
        the glass (on the balance), each further one shows the next page."""
        if self.screen.asleep:
            self.page = pages.BALANCE
        elif self._result is None:
            self.page = (self.page + 1) % pages.COUNT
        self._result = None
        self.refresh()
        self._touch()

    def confirmed(self):
        """A short press confirmed the reopening: show the valve."""
        self._result = None
        self.page = pages.VALVE
        self.refresh()
        self._touch()

    # -- the display task ------------------------------------------------------
    def refresh(self):
        if self._result is not None:
            self.screen.show(*self._result)
        else:
            self.screen.show(*pages.render(self.page, self.meter, self.last_topup, self.battery))

    def step(self):
        now = self.clock.ticks_ms()
        if self.screen.asleep:
            return
        if self._result is not None and self.clock.ticks_diff(now, self._result_at) >= RESULT_MS:
            self._result = None
        limit = self._sleep_ms()
        if limit and self.clock.ticks_diff(now, self._active_at) >= limit:
            self._result = None
            self.page = pages.BALANCE
            self.screen.sleep()
            return
        self.refresh()

