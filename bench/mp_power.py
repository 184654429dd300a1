# Counts time and events per power state of a battery meter over simulated
# days (bench/bench_power.py applies the current model). The firmware's own
# wake path runs on the unix battery board: a fresh boot per wake, the ULP
# program on the emulator counting a household's draws through the reed
# contact model, deep sleep on the virtual clock.
import json
import sys
sys.path.append("tests/mp")
import boards
import main
import wake
from meter import WHY_NONE
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
from boards.unix_battery import Plant

DAYS = 28
DRAWS = ((7, 30), (8, 20), (12, 25), (18, 30), (19, 25), (21, 20))   # (hour, litres): 150 L/day
LPH = 600
CREDIT_L = 3800      # runs out on day 26: one cut-off woken by the ULP threshold


class Household:
    """Opens the tap at the listed hours, each draw a measured pour."""

    def __init__(self, clock, flow):
        self.clock = clock
        self.flow = flow
        self.draws = 0
        clock.attach(self)

    def _next_start(self, now):
        # virtual time starts at midnight (EPOCH_2026, the board's default start)
        t = now // 1_000_000
        day, sec = t // 86400, t % 86400
        for h, _ in DRAWS:
            if h * 3600 > sec:
                return (day * 86400 + h * 3600) * 1_000_000
        return ((day + 1) * 86400 + DRAWS[0][0] * 3600) * 1_000_000

    def next_event_us(self, now):
        return self._next_start(now)

    def advance(self, t0, t1):
        pass

    def at(self, t):
        sec = (t // 1_000_000) % 86400
        if t % 1_000_000 == 0:
            for h, litres in DRAWS:
                if sec == h * 3600:
                    self.flow.pour(litres * 1000, LPH)
                    self.draws += 1


def run():
    plant, d = Plant(), fresh_dir("pw")
    house = Household(plant.clock, plant.flow)
    cfg = make_cfg(friendly_hours=[0, 0], friendly_days=[])

    def boot():
        hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
        return main.assemble(hw, cfg), hw

    m, hw = boot()
    m.balance = CREDIT_L * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    end_ms = DAYS * 86_400_000
    closed_at = None
    while plant.clock.now_ms() < end_ms:
        m, hw = boot()
        ms = wake.work(m, hw)
        if closed_at is None and not m.want_open:
            closed_at = plant.clock.now_ms() // 1000
        plant.deepsleep(ms)
    u = plant.ulp
    total_ms = plant.clock.now_ms()
    rises = plant.valve.rises
    print(json.dumps({
        "days": total_ms / 86_400_000, "sleep_ms": plant.sleep_ms, "awake_ms": plant.awake_ms,
        "boots": plant.boots, "wakes": plant.wakes, "draws": house.draws,
        "ulp_runs_executed": u.runs, "ulp_steps": u.steps, "ulp_fixed_steps": u.fixed_steps,
        "ulp_period_us": u.period_us, "valve_pulses": len(rises["open"]) + len(rises["close"]),
        "delivered_l": plant.flow.delivered_ml() / 1000, "billed_l": m.volume.ml() / 1000,
        "closed_at_s": closed_at, "reed_closings": plant.reed.closings,
    }))


run()
