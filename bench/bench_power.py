"""Power budget of the battery meter (issue 13), measured in the simulator.

bench/mp_power.py runs the firmware's boot and wake path on the unix battery
board, wake after wake, over simulated days of typical use (150 L/day in six
draws, 1 pulse/L reed meter, one credit cut-off woken by the ULP threshold),
with every reporting window a real MQTT session over TLS to Mosquitto
(started here, with the project's ACL), and counts time and events per
power state: sleep, ULP runs, wakes and their CPU time, each window's radio
on-time, TLS sessions and bytes, valve pulses, card-reader polls. This
script applies the current model of docs/BATTERY.md §6 (the sources are
cited there and next to each figure) and prints the average current and the
battery life for a LiSOCl2 D cell, for daily and for hourly windows.

    .venv/bin/python bench/bench_power.py [--days 28] [--hourly-days 1]
"""

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "firmware"))
from mpenv import MICROPYTHON, mp_env  # noqa: E402

# --- current model (uA, mA, s, mAs); docs/BATTERY.md §6 gives the sources ---
I_DEEP_SLEEP_UA = 10.0     # ESP32 datasheet, power modes: deep sleep, RTC timer + RTC memory
I_ULP_ON_UA = 150.0        # same table: deep sleep, "ULP coprocessor is powered on"
ULP_START_US = 100.0       # per ULP run: RTC clock and FSM power-up (assumption, to measure)
ULP_CYCLES_PER_INSN = 8    # TRM ULP chapter: 2-cycle fetch plus 2..6 execute (LD/ST longest)
ULP_CLOCK_MHZ = 8.0        # RTC_FAST_CLK (8 MHz RC oscillator)
I_CPU_MA = 40.0            # ESP32 datasheet: active, radio off, 80-160 MHz (20-40 mA); upper end
BOOT_MS = 600.0            # ROM + 2nd-stage bootloader + MicroPython start + state restore (assumption)
I_LIGHT_UA = 800.0         # ESP32 datasheet: light sleep 0.8 mA (card windows between polls)
I_WIFI_MA = 120.0          # ESP32 datasheet: RX 95-100 mA, TX 802.11n 180-190 mA; mean while on
WIFI_JOIN_S = 1.5          # per connection attempt: association + DHCP (assumption, to measure;
                           # the unix board's network is up at once, so it is added here)
TLS_CPU_S = 0.6            # per TLS session: 3 handshake calls of ~0.2 s at 240 MHz (docs/LINK.md §5)
I_TX_MA = 190.0            # ESP32 datasheet: TX 802.11n MCS7 ~180-190 mA
PHY_MBPS = 6.0             # a low, robust rate for the extra TX time per byte (assumption)
# latching valve pulse: 12 V, 24 Ohm coil for 50 ms = 0.30 J, through an 80 % boost
# from the 3.6 V cell (docs/BATTERY.md §8, firmware/power.py VALVE_UAS)
VALVE_MAS = 0.30 / 0.8 / 3.6 * 1000
I_LCD_SLEEP_UA = 5.0       # HT1621 asleep (docs/DISPLAY.md)
I_REED_PULLUP_UA = 3.6     # 1 MOhm pull-up at 3.6 V with the contact closed: worst case, always closed
I_DIVIDER_UA = 1.8         # battery divider 1 MOhm + 1 MOhm at 3.6 V (the board's battery pin)
I_RC522_ACTIVE_MA = 13.5   # NXP MFRC522 datasheet rev. 3.9, Table 1: analog + digital, field off
I_RC522_FIELD_MA = 60.0    # same table: transmitter on (field), typical 60 mA at 3.3 V (minus the above)
I_RC522_HPD_UA = 5.0       # same table: hard power-down, at most 5 uA

# --- the cell ---
CELL_AH = 19.0             # LiSOCl2 D bobbin cell (e.g. Tadiran TL-5930 class), 3.6 V
USABLE = 0.80              # to 3.0 V cut-off at 20 C, passivation and Wi-Fi pulse losses: 80 % usable
SELF_DISCHARGE = 0.01      # of nominal capacity per year at 20 C
METER = "B1"


def life_years(avg_ua):
    per_year_ah = avg_ua * 1e-6 * 8766 + SELF_DISCHARGE * CELL_AH
    return CELL_AH * USABLE / per_year_ah


def simulate(days, window_s):
    """Run mp_power.py against a TLS broker; its JSON figures."""
    from broker import Broker, meter_acl
    from card.keys import testing_issuer
    from comms import sign
    from headend import HeadEnd
    from office import OfficeKey
    master = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp, \
            Broker(tls=True, users={METER: sign.mqtt_password(master, METER)},
                   acl=meter_acl({METER: 1}, [])) as broker:
        d = Path(tmp) / "meter"
        he = HeadEnd(Path(tmp) / "he.sqlite", master, office=OfficeKey.generate())
        he.provision(METER, 1, d, {"host": broker.host, "port": broker.port, "tls": True,
                                   "keepalive": 60, "backoff_max_s": 2, "timeout_ms": 3000},
                     broker.ca_pem)
        he.close()
        # the reader's card keys (the public test issuer: the unix board is a
        # test build), so every wake's card look runs as on a meter in service
        sp = d / "secrets.json"
        sec = json.loads(sp.read_text())
        sec["card"] = testing_issuer().meter_secrets(METER)
        sp.write_text(json.dumps(sec))
        c = json.loads((d / "config.json").read_text())
        c.update({"window_s": window_s, "friendly_hours": [0, 0], "friendly_days": []})
        (d / "config.json").write_text(json.dumps(c))
        p = subprocess.run([MICROPYTHON, str(ROOT / "bench" / "mp_power.py"), str(d), str(days)],
                           cwd=str(ROOT), env=mp_env(), capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        sys.exit("bench failed:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def budget(f):
    """(charge per state in mAs, total seconds, window figures)."""
    total_s = f["days"] * 86400
    sleep_s = f["sleep_ms"] / 1000
    # ULP runs: every period of the sleep; the emulator skips fixed-point
    # runs, which execute fixed_steps instructions each
    runs = sleep_s * 1e6 / f["ulp_period_us"]
    insns = f["ulp_steps"] + (runs - f["ulp_runs_executed"]) * f["ulp_fixed_steps"]
    ulp_on_s = runs * ULP_START_US / 1e6 + insns * ULP_CYCLES_PER_INSN / ULP_CLOCK_MHZ / 1e6
    w = f["windows"]
    on_s = sum(x["on_ms"] for x in w) / 1000
    attempts = sum(x["attempts"] for x in w)
    sessions = sum(x["sessions"] for x in w)
    tx = sum(x["tx"] for x in w)
    rx = sum(x["rx"] for x in w)
    # the CPU's awake time less the windows (the Wi-Fi figures are the whole chip's)
    # and the card windows' light sleep
    cpu_s = f["boots"] * BOOT_MS / 1000 + f["awake_ms"] / 1000 - on_s
    charge = {                                 # mAs over the run
        "deep sleep (RTC timer + memory)": I_DEEP_SLEEP_UA / 1000 * sleep_s,
        "ULP runs": I_ULP_ON_UA / 1000 * ulp_on_s,
        "CPU awake (boot + wake work)": I_CPU_MA * cpu_s,
        "Wi-Fi on in windows (measured)": I_WIFI_MA * on_s,
        "Wi-Fi join per attempt (model)": I_WIFI_MA * WIFI_JOIN_S * attempts,
        "TLS handshake CPU (model)": I_WIFI_MA * TLS_CPU_S * sessions,
        "TX airtime over RX (measured bytes)": (I_TX_MA - I_WIFI_MA) * tx * 8 / (PHY_MBPS * 1e6),
        "valve pulses": VALVE_MAS * f["valve_pulses"],
        "LCD asleep": I_LCD_SLEEP_UA / 1000 * total_s,
        "reed pull-up (worst case)": I_REED_PULLUP_UA / 1000 * total_s,
        "battery divider": I_DIVIDER_UA / 1000 * total_s,
    }
    if f.get("card") is not None:
        card = f["card"]
        charge["card reader (polls, measured)"] = (I_RC522_ACTIVE_MA * card["active_us"]
                                                   + I_RC522_FIELD_MA * card["field_us"]) / 1e6
        charge["card reader hard power-down"] = I_RC522_HPD_UA / 1000 * total_s
        charge["CPU light sleep (card windows)"] = I_LIGHT_UA / 1000 * f["light_ms"] / 1000
    wf = {"windows": len(w), "ok": sum(1 for x in w if x["ok"]), "on_s": on_s,
          "attempts": attempts, "sessions": sessions, "tx": tx, "rx": rx,
          "sent": sum(x["sent"] for x in w), "received": sum(x["received"] for x in w)}
    return charge, total_s, wf


def report(label, f):
    charge, total_s, wf = budget(f)
    avg_ua = sum(charge.values()) / total_s * 1000
    print("%s: simulated %.1f days: %d wakes (%s), %d draws, %.0f L delivered, %.0f L billed, "
          "cut-off %s" % (label, f["days"], f["boots"],
                          ", ".join("%s %d" % kv for kv in sorted(f["wakes"].items())), f["draws"],
                          f["delivered_l"], f["billed_l"],
                          "at day %.2f by the ULP threshold" % (f["closed_at_s"] / 86400)
                          if f["closed_at_s"] else "none"))
    print("  windows: %d (%d settled), radio on %.1f s in all (%.2f s each), %d connection attempts, "
          "%d TLS sessions, %d B out, %d B in (TLS records), %d messages out, %d in"
          % (wf["windows"], wf["ok"], wf["on_s"], wf["on_s"] / max(1, wf["windows"]),
             wf["attempts"], wf["sessions"], wf["tx"], wf["rx"], wf["sent"], wf["received"]))
    if f.get("card") is not None:
        c = f["card"]
        print("  card reader: %d polls, oscillator on %.1f ms, field on %.1f ms"
              % (c["polls"], c["active_us"] / 1000, c["field_us"] / 1000))
    for k, v in charge.items():
        print("    %-38s %8.2f uA" % (k, v / total_s * 1000))
    print("  average current: %.1f uA; the meter's own charge count (firmware/power.py) says "
          "%.1f uA, %d %% left" % (avg_ua, f["cell_used_uas"] / total_s, f["cell_pct"]))
    return avg_ua


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=28, help="simulated days with daily windows")
    ap.add_argument("--hourly-days", type=int, default=1, help="simulated days with hourly windows")
    a = ap.parse_args()
    daily = report("daily windows", simulate(a.days, 86400))
    hourly = report("hourly windows", simulate(a.hourly_days, 3600))
    print("cell: LiSOCl2 D %.0f Ah, %.0f %% usable, self-discharge %.0f %%/year of nominal"
          % (CELL_AH, USABLE * 100, SELF_DISCHARGE * 100))
    life = life_years(daily)
    print("battery life, daily windows: %.1f years at %.1f uA (target >= 8: %s; the cell's rated "
          "shelf life, about 20 years, bounds it)" % (life, daily, "met" if life >= 8 else "NOT MET"))
    print("battery life, hourly windows: %.1f years at %.1f uA" % (life_years(hourly), hourly))
    return 0 if life >= 8 else 1


if __name__ == "__main__":
    sys.exit(main())
