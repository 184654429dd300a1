# The reporting window of a battery meter (docs/BATTERY.md §7).
#
# A battery meter's radio is off between windows. A window is one MQTT
# session: connect (persistent session, so the broker has kept the QoS 1
# commands and top-ups published meanwhile and delivers them after the
# CONNACK), send the outbox, carry out what arrives and publish its acks,
# wait until all of that is acknowledged and nothing new came for IDLE_MS,
# disconnect. Windows come at fixed local times every `window_s` (daily by
# default, hourly at the least), at each power-on, and when the customer
# presses the button (at most POLLS_PER_DAY a day: the button must not be
# a way to empty the cell). Nothing here runs on a mains board.
STEP_MS = const(200)          # the link's step period, as main.comms_task
IDLE_MS = const(3000)         # settled and quiet this long: the window is done
MAX_S = const(60)             # the radio is never on longer per window ...
CONNECT_S = const(20)         # ... nor longer than this without a broker session
RETRY_S = const(3600)         # a window that failed (no network, no broker): again in an hour,
RETRIES = const(2)            # twice at most, then at the next scheduled time
POLL_GAP_S = const(1800)      # a customer poll at most every 30 min ...
POLLS_PER_DAY = const(4)      # ... and 4 a day
SPREAD_MIN = const(240)       # daily windows spread over 01:00-05:00 local, by meter id
_DAY_S = const(86400)


def offset_s(meter_id, period):
    """Seconds after local midnight (modulo the period) of this meter's
    windows: from a hash of its id, so a region's meters do not all connect
    in the same minute."""
    h = 0
    for ch in meter_id:
        h = (h * 31 + ord(ch)) & 0xFFFF
    return (3600 + (h % SPREAD_MIN) * 60) % period


def next_slot(now, period, offset, tz):
    """The first window time strictly after now."""
    return now + period - (now + tz - offset) % period


class Schedule:
    """When the next window is due, and the customer's polls of the day.
    The Meter saves it in its CRC state (key rw)."""

    def __init__(self):
        self.next = 0          # Unix s of the next window; 0: at the next wake
        self.poll_day = 0      # local day number of the polls counted
        self.polls = 0         # customer polls on that day
        self.last = 0          # when the last window ended
        self.fails = 0         # windows failed in a row

    def load(self, s):
        if s is None:
            return
        for v in s:
            if not isinstance(v, int) or v < 0:
                raise ValueError("window state")
        self.next, self.poll_day, self.polls, self.last, self.fails = s

    def to_state(self):
        return [self.next, self.poll_day, self.polls, self.last, self.fails]

    def due(self, reason, now, tz):
        """Whether this wake opens a window: the schedule's time has come,
        the cell was (re)connected, or the customer asks, within bounds."""
        if reason == "power" or now >= self.next or self.next - now > _DAY_S:
            return True      # (more than a day ahead: the clock was set back)
        if reason != "button":
            return False
        day = (now + tz) // _DAY_S
        if day != self.poll_day:
            self.poll_day, self.polls = day, 0
        if self.polls >= POLLS_PER_DAY or now - self.last < POLL_GAP_S:
            return False
        self.polls += 1
        return True

    def done(self, ok, now, period, offset, tz):
        slot = next_slot(now, period, offset, tz)
        self.fails = 0 if ok else self.fails + 1
        if ok or now >= self.next or self.next - now > _DAY_S:
            # a failed scheduled window is tried again, a little, before the next slot
            self.next = slot if ok or self.fails > RETRIES else min(slot, now + RETRY_S)
        self.last = now


def run(meter, hw, link, ota=None):
    """One window on `link` (an MqttLink not yet connected). Metering goes
    on between link steps. ota: the update's side (ota/battery.py), which
    may keep the window open past its usual end, or None. Returns
    (settled, radio on ms): settled means the outbox is empty and every
    ack is with the broker."""
    clock = hw.clock
    t0 = base = clock.ticks_ms()      # base: where the window's own limits count from
    quiet = None
    ok = False
    while True:
        link.step()
        meter.poll()
        now = clock.ticks_ms()
        if ota is not None and ota.busy(clock.ticks_diff(now, t0)):
            quiet = None             # the update has the radio: the window's limits wait
            base = now
        elif link.settled():
            if quiet is None:
                quiet = now
            elif clock.ticks_diff(now, quiet) >= IDLE_MS:
                ok = True
                break
        else:
            quiet = None
        on = clock.ticks_diff(now, base)
        if on >= MAX_S * 1000 or on >= CONNECT_S * 1000 and not link.connected and not link.connects:
            break
        if hw.wdt is not None:
            hw.wdt.feed()
        clock.delay_ms(STEP_MS if ota is None else ota.step_ms(STEP_MS))
    link.disconnect()
    on = clock.ticks_diff(clock.ticks_ms(), t0)
    if ota is not None:
        ota.close(on)
    return ok, on
