# The ESP32 port's soft-IRQ scheduler, modelled for the unix board.
#
# On the ESP32 a Pin.irq handler is never called from the interrupt: the
# port's GPIO ISR puts (handler, pin) into MicroPython's schedule queue
# (ports/esp32/machine_pin.c, machine_pin_isr_handler -> mp_sched_schedule)
# and the VM runs it later, at a branch of whatever bytecode is running or
# while the REPL or a sleep polls (py/vm.c pending_exception_check,
# py/scheduler.c mp_handle_pending). What this model keeps of that:
#   - the queue has MICROPY_SCHEDULER_DEPTH slots, 8 on the ESP32
#     (ports/esp32/mpconfigport.h); an edge that finds it full is dropped,
#     and nothing tells the handler (mp_sched_schedule returns false, and the
#     ISR ignores it);
#   - callbacks run one at a time: while one runs the scheduler is locked
#     and new edges only queue (mp_sched_run_pending);
#   - C code that never reaches a pending check holds the queue the same
#     way: cpu_bound() stands for such a step (a TLS key exchange, a GC
#     pass) and advances the clock by its cost with the scheduler held.
#   - while SPI flash is erased or written the chip runs with its flash cache
#     off, and interrupts whose handler is not in IRAM wait; the port installs
#     the GPIO ISR service without the IRAM flag (machine_pin.c,
#     gpio_install_isr_service(0)), so the pin's interrupt status bit latches
#     the first edge and later ones are lost: flash_op() models that.
# Between such steps the firmware's bytecode reaches a pending check within
# microseconds, so an edge arriving then runs at once.
_DEPTH = const(8)


class SoftIrq:
    def __init__(self, depth=_DEPTH):
        self.depth = depth
        self._fn = [None] * depth      # a ring, allocated once, as the port's
        self._arg = [None] * depth
        self._head = 0
        self._len = 0
        self._locked = 0
        self._masked = False           # GPIO interrupts deferred (flash cache off)
        self._latched = []             # pins whose status bit holds one edge meanwhile
        self.dropped = 0               # edges lost to a full queue (the chip keeps no count)
        self.coalesced = 0             # edges lost while the interrupt was deferred
        self.ran = 0
        self.peak = 0                  # most callbacks waiting at once

    def schedule(self, fn, arg):
        """The ISR's side: queue fn(arg); False (dropped) when full."""
        if self._masked:
            for f, a in self._latched:
                if a is arg:
                    self.coalesced += 1
                    return False
            self._latched.append((fn, arg))
            return True
        if self._len == self.depth:
            self.dropped += 1
            return False
        i = (self._head + self._len) % self.depth
        self._fn[i] = fn
        self._arg[i] = arg
        self._len += 1
        if self._len > self.peak:
            self.peak = self._len
        if not self._locked:
            self._run_pending()
        return True

    def pending(self):
        return self._len

    def _run_pending(self):
        self._locked += 1
        try:
            while self._len:
                i = self._head
                fn, arg = self._fn[i], self._arg[i]
                self._fn[i] = self._arg[i] = None
                self._head = (i + 1) % self.depth
                self._len -= 1
                try:
                    fn(arg)
                except Exception as e:  # noqa: BLE001 - the port prints it and goes on
                    print("soft IRQ callback error:", repr(e))
                self.ran += 1
        finally:
            self._locked -= 1

    def cpu_bound(self, clock, us):
        """A step of `us` microseconds that holds the scheduler: the clock
        advances by it, edges meanwhile queue, and run when it ends."""
        self._locked += 1
        try:
            clock.delay_us(us)
        finally:
            self._locked -= 1
        if not self._locked:
            self._run_pending()

    def flash_op(self, clock, us):
        """An SPI flash erase or write of `us`: the scheduler is held (the
        call is C) and the GPIO interrupt waits, keeping one edge per pin."""
        self._locked += 1
        self._masked = True
        try:
            clock.delay_us(us)
        finally:
            self._masked = False
        latched, self._latched = self._latched, []
        for fn, arg in latched:      # the deferred ISR runs once per pin
            self.schedule(fn, arg)
        self._locked -= 1
        if not self._locked:
            self._run_pending()
