# Background tick: drives the meter while the REPL prompt is free.
#
# The technician's REPL is the port's own REPL (so mpremote, Ctrl-C, raw
# paste and every terminal program work unchanged). The meter runs behind it
# on a periodic tick; each tick advances the firmware's asyncio tasks by one
# slice (see service.Session.tick). How the tick is produced differs by port,
# which is why it lives in boards/:
#
# TimerTicker (ESP32, S3, C3): machine.Timer. Its callback is a soft IRQ: the
#   port queues it with mp_sched_schedule and runs it in the main context
#   between bytecodes, also while the REPL waits for a key. Ctrl-C is masked
#   (micropython.kbd_intr(-1)) during a tick, so a KeyboardInterrupt can only
#   land in the technician's command, never half-way through a meter poll.
#
# ThreadTicker (unix port): the unix REPL blocks in read() and runs no
#   scheduled callbacks while idle, and the port has no machine.Timer, so a
#   thread calls the tick. The unix port has no GIL: the tick runs under a
#   lock and every service command that touches the meter takes the same lock
#   (Ticker.hold()).
#
# hold() is the one rule for both: inside it no tick runs. Keep it short;
# pulses are counted by hardware (or the IRQ path) meanwhile and are folded in
# by the next tick, so nothing is lost.
import micropython


class _Hold:
    def __init__(self, ticker):
        self._t = ticker

    def __enter__(self):
        self._t._enter()
        return self

    def __exit__(self, *exc):
        self._t._exit()
        return False


class TimerTicker:
    def __init__(self, timer_id=0):
        self._id = timer_id
        self._timer = None
        self._fn = None
        self._held = 0
        self._cb = self._irq  # bound once: the callback must not allocate one
        self.ticks = 0
        self.skipped = 0
        self.running = False

    def start(self, fn, period_ms):
        import machine
        self._fn = fn
        self._timer = machine.Timer(self._id)
        self._timer.init(period=period_ms, mode=machine.Timer.PERIODIC, callback=self._cb)
        self.running = True

    def stop(self):
        if self._timer is not None:
            self._timer.deinit()
        self._timer = None
        self.running = False

    def _irq(self, _t):
        if self._held:
            self.skipped += 1
            return
        self._held = 1
        micropython.kbd_intr(-1)
        try:
            self._fn()
            self.ticks += 1
        finally:
            micropython.kbd_intr(3)
            self._held = 0

    def hold(self):
        return _Hold(self)

    def _enter(self):
        self._held += 1
        micropython.kbd_intr(-1)

    def _exit(self):
        self._held -= 1
        if not self._held:
            micropython.kbd_intr(3)


class ThreadTicker:
    def __init__(self):
        import _thread
        self._thread = _thread
        self._lock = _thread.allocate_lock()
        self._fn = None
        self._period = 100
        self._owner = None
        self._depth = 0
        self.ticks = 0
        self.skipped = 0
        self.errors = 0
        self.running = False

    def start(self, fn, period_ms):
        self._fn = fn
        self._period = period_ms
        self.running = True
        self._thread.start_new_thread(self._loop, ())

    def stop(self):
        self.running = False
        with self.hold():
            pass  # returns once the current tick, if any, is over

    def _loop(self):
        import time
        while self.running:
            with self.hold():
                if self.running:
                    try:
                        self._fn()
                        self.ticks += 1
                    except Exception:  # noqa: BLE001 - the tick records its own errors
                        self.errors += 1
            time.sleep_ms(self._period)

    def hold(self):
        return _Hold(self)

    # re-entrant for the thread that holds it (a command calling a command)
    def _enter(self):
        me = self._thread.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        self._lock.acquire()
        self._owner = me
        self._depth = 1

    def _exit(self):
        self._depth -= 1
        if not self._depth:
            self._owner = None
            self._lock.release()


class ManualTicker:
    """No background at all: tests call tick() themselves (virtual clock)."""

    def __init__(self):
        self._fn = None
        self.ticks = 0
        self.skipped = 0
        self.running = False
        self._held = 0

    def start(self, fn, period_ms):
        self._fn = fn
        self.running = True

    def stop(self):
        self.running = False

    def tick(self):
        if self._held:
            self.skipped += 1
            return
        self._fn()
        self.ticks += 1

    def hold(self):
        return _Hold(self)

    def _enter(self):
        self._held += 1

    def _exit(self):
        self._held -= 1


def for_board(hw):
    """The board's ticker if it names one, else what this port offers."""
    t = getattr(hw, "ticker", None)
    if t is not None:
        return t
    try:
        import machine
        if hasattr(machine, "Timer"):
            return TimerTicker(0)
    except ImportError:
        pass
    return ThreadTicker()


def on_exit(fn):
    """Call fn when the interpreter exits (unix: Ctrl-D, sys.exit). Returns
    False on ports without sys.atexit: there, reboot() saves first and the
    session save bounds what a bare Ctrl-D can lose."""
    import sys
    if hasattr(sys, "atexit"):
        sys.atexit(fn)
        return True
    return False


def soft_reset():
    import machine
    if hasattr(machine, "soft_reset"):
        machine.soft_reset()
    import sys
    sys.exit(0)
