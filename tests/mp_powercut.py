# Meter under power cuts (MicroPython side of tests/host/test_power_cut.py).
#   micropython tests/mp_powercut.py STATE_DIR START_S ACKED STEPS
# Restores the meter from STATE_DIR, lets water flow, and offers every credit
# not yet acknowledged (as a head-end or a re-presented card would). Prints
#   R <ml> <balance>     after restore
#   M <ml> <t>           after each poll
#   A <seq> <code>       when a credit is acknowledged (durable by then)
#   DONE <ml> <balance>  when STEPS polls are through
# The host kills it at random moments and starts it again.
import sys
import boards
import codes
import main
from simkit import make_cfg

CREDITS = 40
AMOUNT = 200_000
state, start, acked, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
acked = [int(s) for s in acked.split(",") if s]
hw = boards.load("unix").build(state_dir=state, start=start)
cfg = make_cfg(tariff={"v": 1, "b": [[0, 350_000]]}, reopen="auto", friendly_hours=[0, 24],
               friendly_days=[], max_balance=10 ** 9)   # detection on: a reboot must not look like a burst
m = main.assemble(hw, cfg)
print("R", m.volume.ml(), m.balance)
hw.world.valve.state = 1 if m.want_open else 0
hw.world.flow.set_rate_lph(720)
pending = [s for s in range(1, CREDITS + 1) if s not in acked]
for i in range(steps):
    hw.clock.advance(1000)
    m.poll()
    print("M", m.volume.ml(), hw.clock.time())
    if pending and i % 7 == 0:
        seq = pending[0]
        r = m.apply_credit("mqtt", 9, seq, AMOUNT)
        if r in (codes.ACCEPTED, codes.USED):
            print("A", seq, r)
            pending.pop(0)
m.save()
print("DONE", m.volume.ml(), m.balance)
print("V", 1 if m.want_open else 0, m.why_closed)
