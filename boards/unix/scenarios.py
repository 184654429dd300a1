# Scripted scenarios for `make sim`: what happens to the simulated meter, and
# when, in simulated seconds from the start. Each step is (at_s, action, arg).
#
# Actions: flow (L/h), topup (units, via the ledger as a vending card would),
# tap (the user confirms reopening), headend (a request to the head-end
# process: tariff / topup), note (a line for the viewer), end.

# Monday 2026-01-05 09:00 UTC: outside friendly hours, so credit policy bites.
START = const(1767603600)

DAY = [
    (0, "note", "meter boots with no credit: valve closed"),
    (60, "topup", 500_000),
    (90, "tap", 0),
    (120, "flow", 720),       # shower, 12 L/min
    (600, "flow", 0),
    (900, "headend", "tariff"),   # region tariff broadcast: 2 blocks, staged for +1 h
    (1800, "flow", 360),      # washing machine
    (3000, "flow", 0),
    (4500, "flow", 1500),     # garden hose: runs the credit down
    (9000, "note", "credit should be gone and the valve closed by now"),
    (9300, "flow", 0),
    (9600, "topup", 3_000_000),
    (9660, "tap", 0),
    (9700, "flow", 600),
    (10800, "end", 0),
]

QUICK = [
    (0, "topup", 300_000),
    (10, "tap", 0),
    (20, "flow", 2500),
    (900, "end", 0),
]

SCENARIOS = {"day": DAY, "quick": QUICK}
