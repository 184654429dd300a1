# Pulse sources: the IRQ path allocates nothing, debounces, and knows direction.
import micropython
from boards.unix.clock import SimClock
from boards.unix.pins import SimPin
from boards.unix.flow import SimCounter
from metering.pulses import CounterSource, IrqSource


def _fire(handler, pin, n):
    # a function, so the loop itself allocates nothing (see NOTES.md)
    for _ in range(n):
        handler(pin)


def test_irq_handler_allocates_nothing():
    clock = SimClock()
    pin = SimPin("p")
    src = IrqSource(pin, SimPin.IRQ_RISING, clock.ticks_us, clock.ticks_diff, 0, SimPin("d"))
    h = pin._handler
    _fire(h, pin, 1)           # warm-up outside the lock
    micropython.heap_lock()
    try:
        _fire(h, pin, 10_000)
    finally:
        micropython.heap_unlock()
    assert src.take() == 10_001


def test_irq_handler_with_debounce_allocates_nothing():
    clock = SimClock()
    pin = SimPin("p")
    src = IrqSource(pin, SimPin.IRQ_RISING, clock.ticks_us, clock.ticks_diff, 2000)
    h = pin._handler
    micropython.heap_lock()
    try:
        _fire(h, pin, 100)     # all at the same instant: one counts, 99 are bounce
    finally:
        micropython.heap_unlock()
    assert src.take() == 1
    assert src.rejected == 99


def test_allocating_handler_is_caught_by_heap_lock():
    # the proof above must be able to fail: a handler that allocates raises
    def bad(pin, acc=[]):
        acc.append(1)
    micropython.heap_lock()
    try:
        try:
            _fire(bad, None, 100)
            raised = False
        except MemoryError:
            raised = True
    finally:
        micropython.heap_unlock()
    assert raised


def test_debounce_drops_reed_chatter_on_the_sim_sensor():
    import boards
    from mptest import fresh_dir
    hw = boards.load("unix").build(state_dir=fresh_dir(), pulse="irq", bounce=3)
    src = IrqSource(hw.pulse_pin, hw.pulse_trigger, hw.clock.ticks_us, hw.clock.ticks_diff, 5000)
    hw.world.valve.state = 1
    hw.world.flow.set_rate_lph(360)       # 0.1 L/s, K=1: one pulse every 10 s
    hw.clock.advance(100_000)
    assert hw.world.flow.emitted == 10
    assert src.take() == 10
    assert src.rejected == 30              # three chatter edges per pulse


def test_counter_source_reads_and_clears():
    c = SimCounter()
    src = CounterSource(c)
    c._n += 7
    assert src.take() == 7
    assert src.take() == 0
    c._n -= 3
    assert src.take() == -3


def test_irq_count_wraps_without_loss():
    clock = SimClock()
    pin = SimPin("p")
    src = IrqSource(pin, SimPin.IRQ_RISING, clock.ticks_us, clock.ticks_diff)
    src._count = src._seen = 0x1FFFFFF0
    _fire(pin._handler, pin, 40)
    assert src.take() == 40


def test_reverse_flow_counts_down_on_irq_path():
    clock = SimClock()
    pin = SimPin("p")
    d = SimPin("d")
    src = IrqSource(pin, SimPin.IRQ_RISING, clock.ticks_us, clock.ticks_diff, 0, d)
    _fire(pin._handler, pin, 5)
    d.drive(1)
    _fire(pin._handler, pin, 8)
    assert src.take() == -3
