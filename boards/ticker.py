# The meter's thread: drives the firmware behind the REPL, on every port.
#
# One model everywhere (docs/RUNTIME.md has the reasons and the port sources
# they come from): the port's own REPL keeps the main thread; the meter runs
# on a second _thread that advances the firmware's asyncio tasks by one slice
# per period (service.Session.tick) while holding a lock. The same class runs
# on the ESP32 (a GIL build) and on the unix port (no GIL).
#
# Why a thread and not a machine.Timer callback: a Timer callback is a soft
# IRQ, and while one runs the port's scheduler is locked, so on a board that
# counts pulses by Pin.irq (ESP32-C3) every edge of a slice waits in the
# 8-slot schedule queue and the ninth is dropped. On the thread a slice is
# ordinary bytecode: the port runs pending pin callbacks between its
# bytecodes, and only C code that never reaches a pending check (a TLS key
# exchange, a GC pass) holds them back.
#
# hold() is the one rule for touching the meter from outside the thread: no
# slice runs inside it. Keep it short; pulses are counted by hardware (or the
# IRQ path) meanwhile and folded in by the next slice. KeyboardInterrupt is
# only ever raised in the main thread (py/scheduler.c, mp_sched_exception), so
# it cannot land in a slice; hold() masks it so that it cannot land half-way
# through a command's change to the meter either.
import micropython

# The meter thread's stack on the ESP32 boards: the size of the port's main
# task (ports/esp32 MICROPY_TASK_STACK_SIZE), a FreeRTOS stack from the IDF
# heap, of which the port keeps 1 KiB as its overflow margin. The unix board
# gives its thread the same usable stack scaled to 64 bits (the unix port
# doubles its own default there, UNIX_STACK_MULTIPLIER) plus that port's
# 8 KiB margin, so a slice that would overflow the ESP32's stack overflows
# in the tests too. Measured: the day simulation runs with 10 KiB usable at
# 64 bits and fails with 8 (docs/RUNTIME.md).
ESP32_STACK = const(16 * 1024)
UNIX_STACK = const(2 * (16 * 1024 - 1024) + 8 * 1024)


class _Hold:
    def __init__(self, ticker):
        self._t = ticker

    def __enter__(self):
        self._t._enter(True)
        return self

    def __exit__(self, *exc):
        self._t._exit(True)
        return False


class ThreadTicker:
    def __init__(self, stack=0):
        # stack: bytes for the thread's stack, 0 for the port's default. On
        # the ESP32 it is a FreeRTOS task stack taken from the IDF heap.
        import _thread
        self._thread = _thread
        self._lock = _thread.allocate_lock()
        self._stack = stack
        self._fn = None
        self._period = 100
        self._owner = None
        self._depth = 0
        self.ticks = 0
        self.errors = 0
        self.longest_us = 0   # the longest slice so far: what a REPL command may wait in hold()
        self.running = False
        # False while a production meter's REPL is closed (service gate):
        # then leaving hold() must not turn Ctrl-C back on
        self.unmask = True

    def start(self, fn, period_ms):
        self._fn = fn
        self._period = period_ms
        self.running = True
        t = self._thread
        old = t.stack_size(self._stack) if self._stack else 0
        try:
            t.start_new_thread(self._loop, ())
        finally:
            if self._stack:
                t.stack_size(old)

    def stop(self):
        self.running = False
        with self.hold():
            pass  # returns once the current slice, if any, is over

    def _loop(self):
        import time
        while self.running:
            self._enter(False)   # Ctrl-C never reaches this thread: nothing to mask
            t0 = time.ticks_us()
            try:
                if self.running:
                    self._fn()
                    self.ticks += 1
            except Exception:  # noqa: BLE001 - the slice records its own errors
                self.errors += 1
            finally:
                self._exit(False)
            d = time.ticks_diff(time.ticks_us(), t0)
            if d > self.longest_us:
                self.longest_us = d
            time.sleep_ms(self._period)

    def hold(self):
        return _Hold(self)

    # re-entrant for the thread that holds it (a command calling a command)
    def _enter(self, mask):
        me = self._thread.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        if mask:
            micropython.kbd_intr(-1)   # before the lock: an interrupt cannot strand it
        self._lock.acquire()
        self._owner = me
        self._depth = 1

    def _exit(self, mask):
        self._depth -= 1
        if not self._depth:
            self._owner = None
            self._lock.release()
            if mask and self.unmask:
                micropython.kbd_intr(3)


class ManualTicker:
    """No thread at all: tests call tick() themselves, on the virtual clock.
    Same fn, same hold() rule: a tick that finds the meter held is skipped."""

    def __init__(self):
        self._fn = None
        self.ticks = 0
        self.skipped = 0
        self.longest_us = 0
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

    def _enter(self, _mask):
        self._held += 1

    def _exit(self, _mask):
        self._held -= 1


def for_board(hw):
    """The board's ticker if it names one, else a thread with the port's
    default stack."""
    t = getattr(hw, "ticker", None)
    return t if t is not None else ThreadTicker()


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
