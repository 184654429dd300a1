# The battery meter's simulator (make sim SCENARIO=battery): the firmware,
# unchanged, on the unix battery board, booted by main.boot() at every wake
# as the chip boots after a deep sleep (docs/BATTERY.md).
#
#   micropython boards/unix/simbattery.py SCENARIO --state DIR --ulp FILE
#
# Between wakes the CPU sleeps on the virtual clock, which jumps from event
# to event: a ULP run, the RTC timer, a button press, a scenario step. The
# scenario's steps are a device model on that clock, so they happen at
# their time whether the meter sleeps or not: water through the reed
# contact (the ULP counts it), a button press (an EXT1 wake), a card held
# to the reader (read in the press's card window), a top-up the
# head-end sends ("!headend topup N" for tools/sim.py, answered "ok" once
# it is at the broker; "!headend ota V unix_battery": a firmware rollout,
# docs/OTA.md §9). The reporting windows are real MQTT sessions, so the
# clock runs at real speed inside them. The board has the modelled OTA
# flash (DIR/flash): an update's switch resets the chip inside its window,
# and the next boot, at once, is the new image's trial. Each wake is printed when it
# ends, but a run of ULP wakes with nothing else in between (a hose running
# for an hour wakes the CPU every 10 L) shows its first and then one line
# for the rest; a summary follows, and DIR/battery-sim.json holds the same
# facts from the objects they come from.
import os
import sys
import json

import codes
import main
import service
import units
import wake
from boards.unix import radiolog, scenarios
from boards.unix.otatext import ota_event
from boards.unix_battery import Plant, Reset
from metering.ulpcount import W_COUNT, W_THRESHOLD


def _stopped(state):
    """tools/sim.py was told Ctrl-C: the day ends after this wake (DIR/sim-stop)."""
    try:
        os.stat(state + "/sim-stop")
        return True
    except OSError:
        return False


def _hms(t):
    return "%02d:%02d:%02d" % ((t // 3600) % 24, (t // 60) % 60, t % 60)


_folded = [0, ""]     # ULP wakes not shown since the last line, the newest of them


def _say(line):
    if _folded[0]:
        sys.stdout.write("           ... and %d more ULP wakes like it, the last %s\n" % tuple(_folded))
        _folded[0] = 0
    sys.stdout.write(line + "\n")


class Script:
    """The scenario's steps, as a model on the Plant's clock."""

    def __init__(self, plant, start, steps, state):
        self.plant = plant
        self.state = state
        self.card = None
        self.start = start
        self.steps = steps
        self.i = 0
        self.done = False
        plant.clock.attach(self)

    def _due_us(self):
        # the Plant's clock counts from 0 at the scenario's start
        return self.steps[self.i][0] * 1_000_000 if self.i < len(self.steps) else None

    def next_event_us(self, now):
        return self._due_us()

    def advance(self, t0, t1):
        pass

    def at(self, t):
        while self.i < len(self.steps) and self._due_us() <= t:
            at_s, action, arg = self.steps[self.i]
            self.i += 1
            self._do(self.start + at_s, action, arg)

    def _do(self, t, action, arg):
        p = self.plant
        if action == "flow":
            p.flow.set_rate_lph(arg)
            _say("[%s] flow %d L/h%s" % (_hms(t), arg, "" if arg == 0 else
                                         " (the CPU sleeps: the ULP counts the reed contact)"))
        elif action == "press":
            p.ext1.fired = p.ext1.armed   # EXT1, all-low: a short press ends the deep sleep
            _say("[%s] the customer presses the button" % _hms(t))
        elif action == "card":
            from boards.unix.mifare_card import ClassicCard
            self.card = (arg, ClassicCard.load("%s/cards/%s.json" % (self.state, arg)))
            p.reader.place(self.card[1])
            _say("[%s] the customer holds the %s card to the reader" % (_hms(t), arg))
        elif action == "remove":
            name, c = self.card
            p.reader.remove(c)
            c.save("%s/cards/%s.json" % (self.state, name))   # what the meter wrote stays on it
            _say("[%s] the %s card is taken away" % (_hms(t), name))
        elif action == "headend":
            _say("!headend " + arg)      # tools/sim.py sends it ...
            _say("!sync")                # ... and answers ok once the broker has it
            sys.stdin.readline()
        elif action == "note":
            _say("[%s] %s" % (_hms(t), arg))
        elif action == "end":
            self.done = True


class BatterySim:
    def __init__(self, name, state, ulp_file):
        start, steps = scenarios.SCENARIOS[name]
        self.state = state
        self.plant = Plant(start=start, real_time=True, ota_dir=state + "/flash", ota_slot=OTA_SLOT)
        self.hw = None
        self.script = Script(self.plant, start, steps, state)
        with open(ulp_file, "rb") as f:
            self.ulp = f.read()
        self.wakes = []            # (time, reason, window or None)
        # the events of every wake, gathered as they happen: the log's RAM
        # ring keeps only the newest 64, fewer than a day of wakes log
        self.events = []
        self._seq = 0
        self._fold = None          # (valve, pulses per wake) of a ULP wake that may start a run
        self._last_threshold = 0
        radiolog.install()
        # each wake is shown when its work is done, before the CPU sleeps
        work = wake.work

        def shown(meter, hw, make_link=None, cards=None, board=None):
            self.hw = hw
            try:
                ms = work(meter, hw, make_link, cards, board)
            except Reset:
                self._show(meter, reset=True)   # the wake ends in the chip's reset
                raise
            self._show(meter)
            return ms
        wake.work = shown

    def run(self):
        p = self.plant
        m = None
        while not self.script.done and not _stopped(self.state):
            self._t, self._reason, self._nw = p.clock.time(), p.wake_reason, len(radiolog.windows)
            self._threshold = p.ulp.word(W_THRESHOLD) & 0xFFFF
            try:
                m = main.boot("unix_battery", state_dir=self.state, plant=p, ulp_binary=self.ulp)
            except Reset:
                continue               # machine.reset(): the chip boots again at once
            if m is None:
                raise SystemExit(1)    # boot() has said why
        return self._summary(m)

    def _show(self, m, reset=False):
        p = self.plant
        t, reason, threshold = self._t, self._reason, self._threshold
        w = radiolog.windows[self._nw] if len(radiolog.windows) > self._nw else None
        self.wakes.append((t, reason, w))
        new = m.log.since(self._seq)
        self.events.extend(new)
        self._seq = m.log.seq
        ota = [e for e in new if e[2] == codes.EV_OTA]
        why = ("woken by the ULP: count reached its threshold %d" % threshold if reason == "ulp"
               else {"power": "power-on", "timer": "RTC timer", "button": "button (EXT1)",
                     "reset": "reset"}.get(reason, reason))
        valve = "open" if m.want_open else "closed (%s)" % codes.WHY_NAMES[m.why_closed]
        if reason == "ulp" and w is None and not ota and self._fold == (valve, threshold - self._last_threshold):
            _folded[0] += 1            # like the wake before: told in one line at the run's end
            _folded[1] = "at %s: %s m3, balance %s" % (_hms(t), units.volume(m.volume.ml()),
                                                      units.money(m.balance))
            self._last_threshold = threshold
            return
        _say("[%s] WAKE %s: %s m3, balance %s, valve %s" % (
            _hms(t), why, units.volume(m.volume.ml()), units.money(m.balance), valve))
        if w is not None:
            _say("           window: %s, radio on %.1f s, %d messages out, %d in, %d B / %d B over TLS"
                 % ("cut by the chip's reset" if w["reset"] else "settled" if w["ok"] else "NOT settled",
                    w["on_ms"] / 1000, w["sent"],
                    w["received"], w["tx"], w["rx"]))
        for e in ota:
            _say("           [%s] ota: %s" % (_hms(e[1]), ota_event(e[3])))
        if reset:
            _say("           the chip resets (machine.reset): it boots again at once, from the slot set_boot chose")
            self._fold = None
            return
        armed = p.ulp.word(W_THRESHOLD) & 0xFFFF
        left = (armed - p.ulp.word(W_COUNT)) & 0xFFFF
        _say("           sleeps; ULP wakes the CPU after %d more pulse%s%s; next window at %s, in %.1f h"
             % (left, "" if left == 1 else "s", "" if m.want_open else " (valve closed: only to keep the count in range)",
                _hms(m.window.next), (m.window.next - m.clock.time()) / 3600))
        # a ULP wake with no window may start a run of wakes told in one line
        self._fold = (valve, left) if reason == "ulp" and w is None else None
        self._last_threshold = threshold

    def _summary(self, m):
        p = self.plant
        reasons = {}
        for _, r, _ in self.wakes:
            reasons[r] = reasons.get(r, 0) + 1
        credits = [(e[1], e[3]) for e in self.events if e[2] == codes.EV_CREDIT]
        closes = [(e[1], e[3]) for e in self.events if e[2] == codes.EV_VALVE_CLOSED]
        ulp_wakes = [t for t, r, _ in self.wakes if r == "ulp"]
        ws = [w for _, _, w in self.wakes if w is not None]
        facts = {
            "wakes": reasons, "windows": len(ws), "settled": sum(1 for w in ws if w["ok"] and not w["reset"]),
            "cut": sum(1 for w in ws if w["reset"]), "radio_s": sum(w["on_ms"] for w in ws) / 1000,
            "credits": credits, "closes": closes, "ulp_wakes": ulp_wakes,
            "delivered_ml": p.flow.delivered_ml(), "billed_ml": m.volume.ml(), "balance": m.balance,
            "cell_used_uas": m.cell.used, "cell_pct": m.cell.level_pct(),
            "sleep_s": p.sleep_ms // 1000, "awake_s": p.awake_ms // 1000,
            "ota": [(e[1], e[3]) for e in self.events if e[2] == codes.EV_OTA],
            "running": self.hw.partitions.running if self.hw and self.hw.partitions else None,
            "fw_floor": m.fw_floor,
        }
        _say("[summary] wakes: " + ", ".join("%s %d" % kv for kv in sorted(reasons.items())))
        _say("[summary] windows: %d, settled %d, cut by a reset %d, radio on %.1f s in all"
             % (facts["windows"], facts["settled"], facts["cut"], facts["radio_s"]))
        for t, amount in credits:
            _say("[summary] credit %s (%d units) applied at %s" % (units.money(amount), amount, _hms(t)))
        for t, why in closes:
            _say("[summary] valve closed at %s, for %s%s" % (
                _hms(t), service.event_detail(codes.EV_VALVE_CLOSED, why),
                ", woken by the ULP threshold" if t in ulp_wakes or t - 1 in ulp_wakes else ""))
        valid = [t for t, a in facts["ota"] if a & 0xFF == codes.OTA_VALID]
        if facts["ota"]:
            _say("[summary] firmware: version %d%s, running from %s" % (
                m.fw_floor, " valid at " + _hms(valid[-1]) if valid else "", facts["running"]))
        _say("[summary] water: %d mL delivered, %d mL billed, balance %s (%d units)"
             % (facts["delivered_ml"], facts["billed_ml"], units.money(m.balance), m.balance))
        _say("[summary] asleep %d s, awake %d s; cell: %d uAs used, %d %% left"
             % (facts["sleep_s"], facts["awake_s"], m.cell.used, m.cell.level_pct()))
        with open(self.state + "/battery-sim.json", "w") as f:
            json.dump(facts, f)
        return 0


OTA_SLOT = 0x1A0000       # the meter boards' app slots (docs/OTA.md §2)


def _args(argv):
    opts = {"scenario": "battery", "state": "sim-state", "ulp": "build/ulp/counter.ulp"}
    i = 1
    while i < len(argv):
        if argv[i] in ("--state", "--ulp"):
            opts[argv[i][2:]] = argv[i + 1]
            i += 1
        else:
            opts["scenario"] = argv[i]
        i += 1
    return opts


if __name__ == "__main__":
    o = _args(sys.argv)
    sys.exit(BatterySim(o["scenario"], o["state"], o["ulp"]).run())
