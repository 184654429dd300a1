# The one scheduling model (docs/RUNTIME.md): boot() runs the meter on the
# board's thread behind the main thread, and pin IRQs go through the ESP32
# port's 8-slot soft-IRQ queue, which drops edges when it is full.
import time

import boards
import main
from boards.unix.softirq import SoftIrq
from metering.pulses import CounterSource, IrqSource
from mptest import fresh_dir

Q3_LPH = const(2500)          # DN15 residential meter, Q3 = 2.5 m3/h


def _irq_board(k, **opts):
    hw = boards.load("unix").build(state_dir=fresh_dir("rt"), k=(k, 1), pulse="irq",
                                   valve_open=True, **opts)
    src = main.pulse_source(hw, {"debounce_us": 0})
    assert isinstance(src, IrqSource)
    return hw, src


def test_the_queue_has_the_esp32_depth_and_drops_when_full():
    q = SoftIrq()
    assert q.depth == 8          # ports/esp32/mpconfigport.h MICROPY_SCHEDULER_DEPTH
    seen = []
    q._locked += 1               # as while a callback runs: edges only queue
    results = [q.schedule(seen.append, i) for i in range(11)]
    assert results == [True] * 8 + [False] * 3
    assert q.dropped == 3 and q.pending() == 8 and seen == []
    q._locked -= 1
    q._run_pending()
    assert seen == list(range(8)), "run one at a time, in arrival order"


def test_an_edge_during_a_callback_waits_for_it():
    q = SoftIrq()
    order = []

    def first(_):
        order.append("first-start")
        q.schedule(order.append, "second")   # an edge while the first runs
        order.append("first-end")
    q.schedule(first, None)
    assert order == ["first-start", "first-end", "second"]


def test_pulses_beyond_the_queue_are_lost_while_a_cpu_bound_step_holds_it():
    hw, src = _irq_board(450)
    flow, irq, clock = hw.world.flow, hw.world.softirq, hw.clock
    flow.set_rate_lph(Q3_LPH)
    clock.advance(2000)               # idle: every edge runs at once
    assert src.take() == flow.emitted and irq.dropped == 0
    before = flow.emitted
    irq.cpu_bound(clock, 200_000)     # 200 ms in C: 62 pulses at 450/L and Q3
    arrived = flow.emitted - before
    assert arrived >= 60
    counted = src.take()
    assert counted == 8, "the queue keeps 8 edges; the chip drops the rest"
    assert irq.dropped == arrived - 8
    clock.advance(1000)               # and counting resumes afterwards
    assert src.take() == flow.emitted - before - arrived


def test_a_flash_erase_keeps_one_edge_of_all_that_came():
    hw, src = _irq_board(450)
    flow, irq, clock = hw.world.flow, hw.world.softirq, hw.clock
    flow.set_rate_lph(Q3_LPH)
    clock.advance(500)
    src.take()
    before = flow.emitted
    irq.flash_op(clock, 45_000)      # a 4 KB sector erase, typical (W25Q32JV)
    arrived = flow.emitted - before
    assert arrived >= 13
    assert src.take() == 1 and irq.coalesced == arrived - 1


def test_a_pcnt_board_counts_through_the_same_step():
    hw = boards.load("unix").build(state_dir=fresh_dir("rt"), k=(450, 1), pulse="counter",
                                   valve_open=True)
    src = main.pulse_source(hw, {"debounce_us": 0})
    assert isinstance(src, CounterSource)
    hw.world.flow.set_rate_lph(Q3_LPH)
    hw.world.softirq.cpu_bound(hw.clock, 200_000)
    hw.world.softirq.flash_op(hw.clock, 45_000)
    assert src.take() == hw.world.flow.emitted > 70


def test_queued_edges_run_late_so_a_software_debounce_rejects_them():
    # the handler reads ticks_us when it runs, not when the edge came: after
    # a hold the queued edges run back to back and look like bounce
    hw = boards.load("unix").build(state_dir=fresh_dir("rt"), k=(450, 1), pulse="irq",
                                   valve_open=True)
    src = main.pulse_source(hw, {"debounce_us": 1000})
    hw.world.flow.set_rate_lph(Q3_LPH)
    hw.clock.advance(100)
    src.take()
    hw.world.softirq.cpu_bound(hw.clock, 100_000)
    assert src.take() == 1 and src.rejected == 7


def test_a_sensor_above_the_irq_boards_limit_is_an_event_at_boot():
    import codes
    from simkit import make_meter
    for k, want in ((3, 0), (4, 1), (450, 1)):
        meter, hw = make_meter(board_opts={"pulse": "irq"}, k=[k, 1])
        assert hw.irq_max_k == 3
        n = sum(1 for e in meter.log.recent(20) if e[2] == codes.EV_CONFIG and e[3] == codes.RANGE)
        assert n == want, (k, n)
    meter, hw = make_meter(board_opts={"pulse": "counter"}, k=[450, 1])
    assert not [e for e in meter.log.recent(20) if e[2] == codes.EV_CONFIG], "PCNT has no limit"


def _credit_and_flow(s, lph):
    with s.ticker.hold():
        m = s.meter
        m.apply_credit("test", 1, 1, 50_000_000)
        m.confirm()
        s.hw.world.flow.set_rate_lph(lph)


def test_boot_runs_the_meter_on_the_boards_thread_while_the_main_thread_waits():
    d = fresh_dir("boot")
    s = main.boot("unix", state_dir=d, pulse="irq", k=(10, 1))
    try:
        assert s is not None and s.ticker is s.hw.ticker, "the board's ticker drives the meter"
        assert type(s.ticker).__name__ == "ThreadTicker"
        _credit_and_flow(s, 3600)
        with s.ticker.hold():
            ml0, t0, ticks0 = s.meter.volume.ml(), s.hw.clock.now_ms(), s.ticker.ticks
        time.sleep_ms(600)            # the main thread blocks, as the REPL in read()
        with s.ticker.hold():
            ml1, t1, ticks1 = s.meter.volume.ml(), s.hw.clock.now_ms(), s.ticker.ticks
            dropped = s.hw.world.softirq.dropped
        assert ticks1 > ticks0 + 5, (ticks0, ticks1)
        assert t1 > t0, "virtual time moves in the meter's slices"
        assert ml1 > ml0, "metering went on while the main thread waited"
        assert dropped == 0
        assert 0 < s.ticker.longest_us < 600_000, "the slices' longest run is measured"
    finally:
        s.ticker.stop()


def test_hold_keeps_slices_out():
    s = main.boot("unix", state_dir=fresh_dir("hold"))
    try:
        with s.ticker.hold():
            n = s.ticker.ticks
            time.sleep_ms(150)        # six periods of the thread
            assert s.ticker.ticks == n, "no slice may run inside hold()"
            with s.ticker.hold():     # re-entrant for the holder
                pass
        time.sleep_ms(150)
        assert s.ticker.ticks > n
    finally:
        s.ticker.stop()
