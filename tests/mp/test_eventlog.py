# The event log never stops metering (issue 11 item 7): add() never raises,
# compaction reads one line at a time, and a damaged file costs lines only.
# (the firmware is imported inside the tests that need it: the heap test
# runs with the log module alone)
import codes
from mptest import fresh_dir, heap
from storage import eventlog
from storage.eventlog import EventLog, FILE_EVENTS


class _Clock:
    def time(self):
        return 1767225600


def test_add_never_raises_on_a_failing_flash():
    d = fresh_dir("evf")
    log = EventLog(d, _Clock())

    def broken(path, mode="r"):
        raise OSError(28)
    eventlog.open = broken
    try:
        for i in range(FILE_EVENTS + 10):            # a compaction falls due, and fails too
            assert log.add(codes.EV_CREDIT, i) is not None
    finally:
        del eventlog.open
    assert log.lost == FILE_EVENTS + 10 and log.seq == FILE_EVENTS + 10
    assert log.recent(1)[0][3] == FILE_EVENTS + 9    # the RAM copy is kept


def test_add_never_raises_on_memory_error():
    d = fresh_dir("evm")
    log = EventLog(d, _Clock())
    calls = [0]

    def no_heap(path, mode="r"):
        calls[0] += 1
        raise MemoryError
    eventlog.open = no_heap
    try:
        log.add(codes.EV_CREDIT, 1)
    finally:
        del eventlog.open
    assert calls[0] == 1 and log.lost == 1

    def bad_listener(ev):
        raise MemoryError
    log.listeners.append(bad_listener)
    assert log.add(codes.EV_CREDIT, 2) is not None


@heap("96K")
def test_compaction_runs_in_a_small_heap():
    # 512 lines in a list of bytes would not fit beside the firmware's
    # modules in 96 KB (64-bit unix port); one line at a time does
    d = fresh_dir("evc")
    with open(d + "/events.log", "wb") as f:
        for i in range(1, FILE_EVENTS + 1):
            f.write(b"%d 1767225600 2 %d\n" % (i, 100_000 + i))
    log = EventLog(d, _Clock())
    import gc
    gc.collect()
    log.add(codes.EV_CREDIT, 7)                      # compacts, then appends
    assert log.lost == 0
    n, first, last = 0, None, None
    with open(d + "/events.log", "rb") as f:     # checked a line at a time too
        for line in f:
            n += 1
            first = first or int(line.split()[0])
            last = int(line.split()[0])
    assert (n, first, last) == (FILE_EVENTS // 2 + 1, FILE_EVENTS // 2 + 1, FILE_EVENTS + 1)


def test_a_file_without_newlines_is_read_in_pieces():
    d = fresh_dir("evg")
    with open(d + "/events.log", "wb") as f:
        f.write(b"x" * 200_000)                      # damage: one 200 KB "line"
        f.write(b"\n7 1767225600 2 5\n")
    log = EventLog(d, _Clock())
    assert log.seq == 7


def test_meter_task_survives_a_poll_that_raises_memory_error():
    import asyncio
    import main
    from simkit import make_meter
    m, hw = make_meter()
    polls = [0]
    real = m.poll

    def poll():
        polls[0] += 1
        if polls[0] < 5:
            raise MemoryError
        real()
    m.poll = poll

    async def for_a_while():
        t = asyncio.create_task(main.meter_task(m, hw))
        for _ in range(10):
            await asyncio.sleep_ms(0)
        assert not t.done() if hasattr(t, "done") else True
        t.cancel()
    asyncio.run(for_a_while())
    assert polls[0] >= 6
    assert len([e for e in m.log.recent(64) if e[2] == codes.EV_INTERNAL]) == 1


def test_metering_goes_on_while_the_log_cannot_write():
    from simkit import make_meter, run
    m, hw = make_meter(reopen="auto", save_l=1)
    m.apply_credit("card", 1, 1, 50_000_000)

    def broken(path, mode="r"):
        raise OSError(5)
    eventlog.open = broken
    try:
        hw.world.flow.set_rate_lph(3600)
        m.balance = 1_010_000                       # low-credit events fall due while it fails
        run(m, hw, 60)
    finally:
        del eventlog.open
    assert m.volume.ml() >= 59_000 and m.log.lost > 0
    assert m.store.load()["vol"] == m.volume.to_state()   # the state saves went on
