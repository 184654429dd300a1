# Scripted scenarios for `make sim`: what happens to the simulated meter, and
# when, in simulated seconds from the start. Each step is (at_s, action, arg).
#
# Actions: flow (L/h); card NAME / remove (a card image from the vending
# tool on the reader); vend (the office tops a card up); topup (units, straight
# into the ledger); tap (the user confirms reopening); press (a short press of
# the button: the display's next page); emergency (the button held);
# headend (the head-end publishes: tariff); note; end.

# Monday 2026-01-05 09:00 UTC: outside friendly hours, so credit policy bites.
START = const(1767603600)

DAY = [
    (0, "note", "meter boots with no credit: valve closed"),
    (60, "card", "user"),         # card bought at the vending office: 5.00
    (75, "remove", 0),            # the tap applied the credit and confirmed the reopening
    (120, "flow", 720),           # shower, 12 L/min
    (600, "flow", 0),
    (900, "headend", "tariff"),   # region tariff broadcast: 2 blocks, staged for +1 h
    (1200, "card", "clone"),      # a copy of the card made before the tap: replay
    (1215, "remove", 0),
    (1260, "card", "foreign"),    # a card issued for another region
    (1275, "remove", 0),
    (1300, "card", "forged-tariff"),  # price 0, forged from a meter's dump: not office-signed
    (1315, "remove", 0),
    (1800, "flow", 360),          # washing machine
    (2400, "outage", "start"),    # the broker goes down; metering goes on
    (3000, "flow", 0),
    (3700, "outage", "end"),      # back: queued telemetry drains in order
    (4500, "flow", 1500),         # garden hose: runs the credit down, crosses the block
    (9000, "note", "credit should be gone and the valve closed by now"),
    (9010, "press", 0),           # the customer looks: the balance, valve shut ...
    (9020, "press", 0),           # ... the next pages
    (9030, "press", 0),
    (9300, "flow", 0),
    (9360, "emergency", 0),       # the button: emergency credit
    (9420, "tap", 0),
    (9480, "flow", 600),
    (9600, "flow", 0),
    (9650, "headend", "topup 1000000"),     # online top-up, 10.00: repays the emergency credit first
    (9700, "vend", "topup user 3000000"),   # back to the office: 30.00
    (9800, "card", "user"),
    (9815, "remove", 0),
    (9900, "flow", 600),
    (10500, "flow", 0),
    (10600, "card", "check"),     # the office's check card collects the meter's data
    (10615, "remove", 0),
    (10800, "end", 0),
]

# No card here: the user card's 5.00 is the day scenario's. The 3.00 goes
# straight into the meter's ledger, as an office adjustment would.
QUICK = [
    (0, "note", "meter boots with no credit: valve closed; this scenario taps no card"),
    (0, "topup", 300_000),
    (0, "note", "the valve stays closed until the customer confirms at the meter"),
    (10, "tap", 0),
    (15, "press", 0),             # the customer looks: the LCD wakes on the 3.00 (awake: the next page)
    (20, "flow", 2500),           # a tap at 2.5 m3/h: 3.00 at 3.50/m3 buys about 857 L
    (900, "end", 0),
]

# 02:00 on a Monday: a valve that has not moved for 31 days is exercised
# (close, then reopen) at the quiet hour, 03:00, with no flow.
NIGHT_START = const(1767578400)

NIGHT = [
    (0, "card", "user"),
    (15, "remove", 0),
    (30, "stale", 31),            # the valve last moved 31 days ago
    (60, "flow", 300),            # a late glass of water ...
    (120, "flow", 0),             # ... then the house is quiet
    (5400, "end", 0),
]

# A firmware update (docs/OTA.md): one list of steps per boot of the meter,
# since an update resets it; tools/sim.py powers it up again each time.
OTA = (
    [(0, "topup", 2_000_000),
     (10, "tap", 0),
     (20, "flow", 600),
     (60, "headend", "ota-forged 2"),  # signed with a key that is not the office's: refused
     (120, "headend", "ota 2"),        # the office's version 2, all groups: it downloads beside
                                       # the running tap, is checked, switched to; the meter resets
     (27000, "note", "the update did not finish"),
     (27010, "end", 0)],
    [(0, "note", "version 2's first boot: self-test, then marked valid"),
     (20, "flow", 600),
     (300, "flow", 0),
     (600, "headend", "ota 3 broken"),  # version 3's card driver does not work
     (27000, "note", "the update did not finish"),
     (27010, "end", 0)],
    [(0, "note", "version 3's first boot: the self-test finds no card reader"),
     (3600, "note", "the broken image was never reset"),
     (3610, "end", 0)],
    [(0, "note", "back on version 2: the bootloader rolled back"),
     (60, "flow", 600),
     (600, "flow", 0),
     (900, "headend", "ota-check"),     # the head-end has the failure: it halts the rollout
     (960, "end", 0)],
)

# A day of a battery meter (docs/BATTERY.md): boards/unix/simbattery.py plays
# it on the unix battery board, asleep but for its wakes. From Monday 00:00;
# each step happens while the meter sleeps, so the ULP counts the water and
# a top-up waits at the broker. Actions: flow (L/h), press (the button: an
# EXT1 wake), card NAME / remove (a card from the vending tool at the
# reader), headend (topup N: the head-end sends an online top-up; ota V
# unix_battery: a firmware rollout, tools/sim.py), note, end.
BATTERY_START = const(1767571200)

BATTERY = [
    (0, "note", "a new cell: the power-on window announces the meter; no credit, valve closed"),
    (1200, "headend", "topup 100000"),    # 1.00 bought online at 00:20: waits for the night's window
    (25200, "press", 0),                  # 07:00 the customer presses: confirms the reopening, polls
    (25500, "flow", 600),                 # 07:05 a shower, 60 L
    (25860, "flow", 0),
    (32400, "press", 0),                  # 09:00 press, then the user card (5.00 from the office):
    (32402, "card", "user"),              # read in the press's card window
    (32420, "remove", 0),
    (43200, "headend", "topup 200000"),   # 12:00 2.00 more online ...
    (43500, "press", 0),                  # ... 12:05 a press fetches it now, not tonight
    (61200, "flow", 1500),                # 17:00 the garden hose runs the credit out: the ULP wakes the CPU
    (68400, "flow", 0),                   # 19:00 the hose is turned off (the valve closed long before)
    (75600, "headend", "ota 2 unix_battery"),  # 21:00 the office rolls out version 2: retained, it waits
                                          # for the night's window, which downloads it, switches and
                                          # resets; the new image's trial follows in the same wake
    (108000, "end", 0),                   # 06:00 the next day, after the night's window
]

SCENARIOS = {"day": (START, DAY), "quick": (START, QUICK), "night": (NIGHT_START, NIGHT),
             "ota": (START, OTA), "battery": (BATTERY_START, BATTERY)}
