# Meter under power cuts (MicroPython side of tests/host/test_power_cut.py).
#   micropython tests/mp_powercut.py STATE_DIR START_S STEPS N0 [POLL_S LPH]
# Restores the meter from STATE_DIR, lets water flow at 720 L/h (K = 1
# pulse/L) and offers every credit not yet acknowledged, one every 13 polls,
# as a re-presented card or a re-sent MQTT command would. They come as the
# first line of stdin, "card:3,mqtt:2,..." (a long argv crashes the unix
# port); N0 is the first MQTT command counter of this run.
#
# At each point where a cut matters the process stops and waits for the
# host, which either answers "g" or kills it (SIGKILL) there:
#   P  before a poll (the poll's pulses are counted, not yet folded in)
#   S1 after each write() into a state file (header written, body not; or
#      body written, file not closed)
#   S2 before the rename of a new state copy, S3 after it
#   C1 a credit returned from the meter, its ack not yet sent
#   C2 its ack sent
#   H1 half of a history record written into its ring slot (a torn
#      record), H2 all of it
#   BS1/BS2/BS3 as S1-S3, in a save of the poll that crosses a midnight
#      (frozen records in the making)
# POLL_S (default 1) is the meter time between polls, LPH (default 720) the
# flow: the history variant polls every 300 s so a life crosses midnights.
# Each stop line is "<tag> <delivered mL> <time>", the flow model's water
# so far in this run: the host's expected values come from it, not from the
# meter. Other lines:
#   R <ml> <balance> <corrupt copies> <rollback> <lost>   after restore
#   H <d|m> <seq> <t> <al> <span> <ml> <dml> <tc> <chg> <bal>  each frozen record then
#   Y <today ml> <today chg> <month ml> <month chg> <charged>  the open intervals
#   O <path> <seq>                                        a credit offered
#   A <path> <seq> <code>                                 its ack
#   DONE <ml> <balance> <valve open>
# The credits: "card" taps a user card through the MFRC522 model and the
# card session; "mqtt" hands a signed topup command to the link's command
# layer (comms/commands.py), as the link does with a received message.
import json
import sys

import boards
import codes
import main
import storage.history as sh
import storage.state as st
from comms import codec
from comms.commands import Commands
from simkit import make_cfg

AMOUNT = 200_000
MK = b"meter-key-for-tests-0123456789ab"
state, start, steps, n0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
poll_s = int(sys.argv[5]) if len(sys.argv) > 5 else 1
lph = int(sys.argv[6]) if len(sys.argv) > 6 else 720
pending = sys.stdin.readline().strip()
pending = [(p.split(":")[0], int(p.split(":")[1])) for p in pending.split(",") if p]
hw = boards.load("unix").build(state_dir=state, start=start)
flow = hw.world.flow


boundary = ""          # "B" while a poll crosses a midnight


def stop(tag):
    if tag[0] == "S":
        tag = boundary + tag
    sys.stdout.write("%s %d %d\n" % (tag, flow.delivered_ml(), hw.clock.time()))
    if sys.stdin.readline().strip() != "g":
        sys.exit(3)


# -- the kill points inside a save, at the filesystem calls the store makes --
_open = open


class _StopFile:
    # S1 once the header is written and once the body is (the store streams
    # the body in many small json.dump writes: a stop at each would only
    # repeat "body half written", which the CRC already refuses)
    def __init__(self, f):
        self._f = f
        self._head = True

    def write(self, b):
        n = self._f.write(b)
        if self._head:
            self._head = False
            self._stop()
        return n

    def _stop(self):
        if hasattr(self._f, "flush"):
            self._f.flush()
        stop("S1")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self._stop()
        self._f.close()


def _store_open(path, mode="r"):
    f = _open(path, mode)
    return _StopFile(f) if "w" in mode else f


class _StopOs:
    def __init__(self, real):
        self._os = real

    def rename(self, a, b):
        stop("S2")
        self._os.rename(a, b)
        stop("S3")

    def remove(self, p):
        self._os.remove(p)


st.open = _store_open
st.os = _StopOs(st.os)


class _TornFile:
    # a record written in two halves, with a stop between: a cut there
    # leaves a torn slot
    def __init__(self, f):
        self._f = f

    def seek(self, n):
        return self._f.seek(n)

    def write(self, b):
        half = len(b) // 2
        self._f.write(b[:half])
        self._f.flush()
        stop("H1")
        self._f.write(b[half:])
        self._f.flush()
        stop("H2")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _ring_open(path, mode="r"):
    f = _open(path, mode)
    return _TornFile(f) if mode == "r+b" else f


sh.open = _ring_open

cfg = make_cfg(tariff={"v": 1, "b": [[0, 350_000]]}, reopen="auto", friendly_hours=[0, 24],
               friendly_days=[], max_balance=10 ** 9)   # detection on: a reboot must not look like a burst
m = main.assemble(hw, cfg)
print("R", m.volume.ml(), m.balance, len(m.store.corrupt), m.rollback, 1 if m.state_lost else 0)
for kind in ("d", "m"):
    for r in m.history.records(kind, 0, sh.DAYS):
        print("H", kind, " ".join(str(x) for x in r))
_d, _mo = m.history.today(), m.history.month()
print("Y", _d["ml"], _d["chg"], _mo["ml"], _mo["chg"], m.charged)
hw.world.valve.state = 1 if m.want_open else 0
flow.set_rate_lph(lph)

# -- the two credit paths --
tp = codec.topics(m.cfg["meter_id"], m.cfg["region"])
commands = Commands(m.cfg, m, hw.clock, tp["c"].encode(), tp["tariff"].encode(), meter_key=MK)
from test_card_rig import user_card, tap         # noqa: E402 - the card rig needs the meter's board
from card.mfrc522 import MFRC522                 # noqa: E402
from card.keys import testing_meter_keys         # noqa: E402
from card.session import Session                 # noqa: E402
session = Session(MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock), m,
                  testing_meter_keys(m.cfg["meter_id"]), hw.clock)
n_next = n0


def offer(path, seq):
    global n_next
    if path == "card":
        c, _ = user_card(amount=AMOUNT, seq=seq)
        code = tap(hw, session, c)
        hw.world.reader.remove()
        return code
    body = codec.command(n_next, "topup", a=9, s=seq, v=AMOUNT)
    n_next += 1
    ack = commands.handle(tp["c"].encode(), codec.seal(MK, tp["c"].encode(), body))
    return codec.parse_ack(ack, False)["code"]


for i in range(steps):
    hw.clock.advance(poll_s * 1000)
    stop("P")
    boundary = "B" if m.history.day_end and hw.clock.time() >= m.history.day_end else ""
    m.poll()
    boundary = ""
    if pending and i % 13 == 0:
        path, seq = pending[0]
        print("O", path, seq)
        r = offer(path, seq)
        stop("C1")
        if r in (codes.ACCEPTED, codes.USED):
            print("A", path, seq, r)
            pending.pop(0)
            stop("C2")
m.save()
print("DONE", m.volume.ml(), m.balance, 1 if m.want_open else 0)
