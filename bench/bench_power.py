"""Power budget of the battery meter (issue 13), measured in the simulator.

bench/mp_power.py runs the firmware's wake path on the unix battery board
for 28 simulated days of typical use (150 L/day in six draws, 1 pulse/L reed
meter, one credit cut-off woken by the ULP threshold) and counts time and
events per power state. This script applies the current model of
docs/BATTERY.md §5 (the sources are cited there and next to each figure)
and prints the average current and the battery life for a LiSOCl2 D cell.

    .venv/bin/python bench/bench_power.py
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpenv import MICROPYTHON, mp_env  # noqa: E402

# --- current model (uA, mA, ms, mAs); docs/BATTERY.md §5 gives the sources ---
I_DEEP_SLEEP_UA = 10.0     # ESP32 datasheet, power modes: deep sleep, RTC timer + RTC memory
I_ULP_ON_UA = 150.0        # same table: deep sleep, "ULP coprocessor is powered on"
ULP_START_US = 100.0       # per ULP run: RTC clock and FSM power-up (assumption, to measure)
ULP_CYCLES_PER_INSN = 8    # TRM ULP chapter: 2-cycle fetch plus 2..6 execute (LD/ST longest)
ULP_CLOCK_MHZ = 8.0        # RTC_FAST_CLK (8 MHz RC oscillator)
I_CPU_MA = 40.0            # ESP32 datasheet: active, radio off, 80-160 MHz (20-40 mA); upper end
BOOT_MS = 600.0            # ROM + 2nd-stage bootloader + MicroPython start + state restore (assumption)
I_WIFI_MA = 120.0          # ESP32 datasheet: RX 95-100 mA, TX 802.11n 180-190 mA; mean over a session
WIFI_S = 5.0               # associate + DHCP + TLS resumption-less handshake + MQTT publish (assumption)
VALVE_MAS = 0.3 * 50       # latching valve coil: 300 mA for the 50 ms pulse (board VALVE pulse_ms)
I_LCD_SLEEP_UA = 5.0       # HT1621 asleep (docs/DISPLAY.md)
I_REED_PULLUP_UA = 3.6     # 1 MOhm pull-up at 3.6 V with the contact closed: worst case, always closed
I_DIVIDER_UA = 1.8         # battery divider 1 MOhm + 1 MOhm at 3.6 V (the board's battery pin)

# --- the cell ---
CELL_AH = 19.0             # LiSOCl2 D bobbin cell (e.g. Tadiran TL-5930 class), 3.6 V
USABLE = 0.80              # to 3.0 V cut-off at 20 C, passivation and Wi-Fi pulse losses: 80 % usable
SELF_DISCHARGE = 0.01      # of nominal capacity per year at 20 C


def life_years(avg_ua):
    per_year_ah = avg_ua * 1e-6 * 8766 + SELF_DISCHARGE * CELL_AH
    return CELL_AH * USABLE / per_year_ah


def main():
    p = subprocess.run([MICROPYTHON, str(ROOT / "bench" / "mp_power.py")], cwd=str(ROOT),
                       env=mp_env(), capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit("bench failed:\n" + p.stdout + p.stderr)
    f = json.loads(p.stdout.strip().splitlines()[-1])
    total_s = f["days"] * 86400
    sleep_s = f["sleep_ms"] / 1000
    # ULP runs: every period of the sleep; the emulator skips fixed-point
    # runs, which execute fixed_steps instructions each
    runs = sleep_s * 1e6 / f["ulp_period_us"]
    insns = f["ulp_steps"] + (runs - f["ulp_runs_executed"]) * f["ulp_fixed_steps"]
    ulp_on_s = runs * ULP_START_US / 1e6 + insns * ULP_CYCLES_PER_INSN / ULP_CLOCK_MHZ / 1e6
    wakes = f["boots"]
    reports = f["wakes"].get("timer", 0)      # the daily window: the midnight wake reports
    charge = {                                 # mAs over the run
        "deep sleep (RTC timer + memory)": I_DEEP_SLEEP_UA / 1000 * sleep_s,
        "ULP runs": I_ULP_ON_UA / 1000 * ulp_on_s,
        "CPU awake (boot + wake work)": I_CPU_MA * (wakes * BOOT_MS + f["awake_ms"]) / 1000,
        "Wi-Fi report (daily window)": I_WIFI_MA * WIFI_S * reports,
        "valve pulses": VALVE_MAS * f["valve_pulses"],
        "LCD asleep": I_LCD_SLEEP_UA / 1000 * total_s,
        "reed pull-up (worst case)": I_REED_PULLUP_UA / 1000 * total_s,
        "battery divider": I_DIVIDER_UA / 1000 * total_s,
    }
    total = sum(charge.values())
    avg_ua = total / total_s * 1000
    print("simulated %.1f days: %d wakes (%s), %d draws, %.0f L delivered, %.0f L billed, "
          "cut-off at day %.2f by the ULP threshold"
          % (f["days"], wakes, ", ".join("%s %d" % kv for kv in sorted(f["wakes"].items())),
             f["draws"], f["delivered_l"], f["billed_l"], (f["closed_at_s"] or 0) / 86400))
    print("ULP: %.0f runs (%d executed in the emulator), %.1f instructions per run, on %.3f %% of the time"
          % (runs, f["ulp_runs_executed"], insns / runs, 100 * ulp_on_s / total_s))
    for k, v in charge.items():
        print("  %-34s %8.2f uA" % (k, v / total_s * 1000))
    print("average current: %.1f uA" % avg_ua)
    print("cell: LiSOCl2 D %.0f Ah, %.0f %% usable, self-discharge %.0f %%/year of nominal"
          % (CELL_AH, USABLE * 100, SELF_DISCHARGE * 100))
    print("battery life, daily reports: %.1f years (target >= 8; the cell's rated shelf life, "
          "about 20 years, bounds it)" % life_years(avg_ua))
    hourly = avg_ua + I_WIFI_MA * WIFI_S * 23 / 86400 * 1000
    print("battery life, hourly reports: %.1f years (%.1f uA)" % (life_years(hourly), hourly))


if __name__ == "__main__":
    main()
