# Counts time and events per power state of a battery meter over simulated
# days (bench/bench_power.py applies the current model). The firmware's own
# boot and wake path (main.boot on the unix battery board, wake.cycle) runs
# wake after wake on one Plant: the ULP program on the emulator counting a
# household's draws through the reed contact model, deep sleep on the
# virtual clock, and each reporting window a real MQTT session over TLS with
# the broker bench_power.py started.
#
#   micropython bench/mp_power.py STATE_DIR DAYS
#
# STATE_DIR is provisioned (config.json with window_s, secrets.json).
import json
import sys
sys.path.append("tests/mp")
import boards
import main
from boards.unix import radiolog
from meter import WHY_NONE
from ulpkit import binary
from boards.unix_battery import Plant

DRAWS = ((7, 30), (8, 20), (12, 25), (18, 30), (19, 25), (21, 20))   # (hour, litres): 150 L/day
LPH = 600
CREDIT_L = 3800      # runs out on day 26 (150 L/day): one cut-off woken by the ULP threshold


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


def run(d, days):
    plant = Plant(real_time=True)
    house = Household(plant.clock, plant.flow)
    radiolog.install()
    # the installation: credit bought at the office before the cell went in
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    m = main.assemble(hw)
    m.balance = CREDIT_L * 350
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    plant.power_lost = True            # the cell goes in: a power-on boot
    end_ms = days * 86_400_000
    closed_at = None
    while plant.clock.now_ms() < end_ms:
        m = main.boot("unix_battery", state_dir=d, plant=plant, ulp_binary=binary())
        if m is None:
            sys.exit(1)
        if closed_at is None and not m.want_open:
            closed_at = plant.clock.now_ms() // 1000
    boots = plant.boots
    # the end of the run: what the ULP counted since the last wake, billed
    # (not a wake of the budget)
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    m = main.assemble(hw)
    m.poll()
    u = plant.ulp
    total_ms = plant.clock.now_ms()
    rises = plant.valve.rises
    reader = getattr(plant, "reader", None)
    usage = reader.usage() if reader is not None and hasattr(reader, "usage") else None
    print(json.dumps({
        "days": total_ms / 86_400_000, "sleep_ms": plant.sleep_ms, "awake_ms": plant.awake_ms,
        "light_ms": getattr(plant, "light_ms", 0),
        "boots": boots, "wakes": plant.wakes, "draws": house.draws,
        "ulp_runs_executed": u.runs, "ulp_steps": u.steps, "ulp_fixed_steps": u.fixed_steps,
        "ulp_period_us": u.period_us, "valve_pulses": len(rises["open"]) + len(rises["close"]),
        "delivered_l": plant.flow.delivered_ml() / 1000, "billed_l": m.volume.ml() / 1000,
        "closed_at_s": closed_at, "reed_closings": plant.reed.closings,
        "windows": radiolog.windows, "window_s": m.cfg["window_s"],
        "cell_used_uas": m.cell.used, "cell_pct": m.cell.level_pct(),
        "card": None if usage is None else {"active_us": usage[0], "field_us": usage[1],
                                            "polls": usage[2]},
    }))


run(sys.argv[1], int(sys.argv[2]))
