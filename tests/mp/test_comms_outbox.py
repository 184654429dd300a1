# The store-and-forward outbox on flash (firmware/comms/outbox.py).
import os

from mptest import fresh_dir
from comms import codec
from comms.outbox import Outbox


def tele(t, ml=0):
    return codec.tele(t, ml, 0, 0, 0, 1, 0, None)


def drain(ob, n=16):
    got = []
    while True:
        recs = ob.peek(n)
        if not recs:
            return got
        got.extend(codec.decode_record(r)[0] for r in recs)
        ob.ack(recs)


def test_records_leave_in_order_grouped_by_topic():
    ob = Outbox(fresh_dir("ob"))
    ob.append(tele(1))
    ob.append(tele(2))
    ob.append(codec.event(1, 3, 7, 0))
    ob.append(tele(4))
    first = ob.peek()
    assert [codec.seq_of(r) for r in first] == [1, 2]        # telemetry run only
    ob.ack(first)
    second = ob.peek()
    assert [r[0] for r in second] == [codec.EVENT]
    ob.ack(second)
    assert [codec.seq_of(r) for r in ob.peek()] == [4]
    assert ob.count == 1


def test_survives_restart_and_resumes_sequence():
    d = fresh_dir("ob")
    ob = Outbox(d, seg_recs=4)
    for t in range(10):
        ob.append(tele(t))
    ob.ack(ob.peek(3))
    ob2 = Outbox(d, seg_recs=4)
    assert ob2.count == 7 and ob2.acked == 3 and ob2.next_seq == 11
    assert ob2.append(tele(99)) == 11
    got = drain(ob2)
    assert [r["seq"] for r in got] == list(range(4, 12))
    # fully delivered segments are gone from flash, the tail may stay
    assert len(os.listdir(d + "/outbox")) <= 2
    assert Outbox(d, seg_recs=4).next_seq == 12


def test_torn_last_frame_is_dropped_at_boot():
    d = fresh_dir("ob")
    ob = Outbox(d)
    ob.append(tele(1))
    ob.append(tele(2))
    path = "%s/outbox/%08x" % (d, ob.segs[-1])
    with open(path, "ab") as f:
        f.write(b"\x28\x01\x00\x00")   # a power cut in the middle of a frame
    ob2 = Outbox(d)
    assert ob2.count == 2 and ob2.next_seq == 3
    ob2.append(tele(3))
    assert [r["t"] for r in drain(ob2)] == [1, 2, 3]


def test_event_sequence_is_remembered():
    d = fresh_dir("ob")
    ob = Outbox(d)
    ob.append(codec.event(41, 1, 2, 0))
    ob.ack(ob.peek())
    assert Outbox(d).ev_seen == 41


def test_holds_thirty_days_of_hourly_telemetry_without_loss():
    ob = Outbox(fresh_dir("ob"))
    lost = []
    ob.on_overflow = lost.append
    for h in range(30 * 24):
        ob.append(tele(h * 3600, h))
        if h % 24 == 0:
            ob.append(codec.event(h, h * 3600, 4, 0))   # a few events too
    assert not lost and ob.summarised == 0
    got = drain(ob, 16)
    assert len(got) == 30 * 24 + 30
    assert [r["seq"] for r in got] == list(range(1, 30 * 24 + 31))


def test_overflow_summarises_oldest_telemetry_and_says_so():
    ob = Outbox(fresh_dir("ob"), seg_recs=8, max_segs=4)
    lost = []
    ob.on_overflow = lost.append
    for i in range(100):
        ob.append(tele(1000 + i, 10 * i))
        if i % 10 == 5:
            ob.append(codec.event(i, 1000 + i, 13, i))
    assert lost, "overflow must be reported"
    assert len(ob.segs) <= 4
    got = drain(ob)
    seqs = [r["seq"] for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    sums = [r for r in got if r["kind"] == codec.SUMMARY]
    tel = [r for r in got if r["kind"] == codec.TELE]
    evs = [r for r in got if r["kind"] == codec.EVENT]
    assert len(sums) == 1
    s = sums[0]
    # every telemetry record is either delivered or counted in the summary
    assert s["n"] + len(tel) == 100
    assert s["t0"] == 1000 and s["ml0"] == 0
    assert tel[0]["t"] == s["t1"] + 1 and tel[-1]["ml"] == 990
    assert s["ml1"] == 10 * (s["n"] - 1)
    assert len(evs) + s["dropped"] == 10     # events kept, or counted
    assert ob.summarised == s["n"]


def test_event_storm_drops_oldest_events_counted():
    ob = Outbox(fresh_dir("ob"), seg_recs=4, max_segs=2)
    lost = []
    ob.on_overflow = lost.append
    for i in range(30):
        ob.append(codec.event(i + 1, i, 12, 0))
    got = drain(ob)
    assert ob.dropped_events > 0 and sum(lost) >= ob.dropped_events
    assert len(got) + ob.dropped_events == 30
    assert got[-1]["evs"] == 30   # the newest survive
