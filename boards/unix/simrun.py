# The simulator: the firmware, unchanged, on the unix board at accelerated time.
#
#   micropython boards/unix/simrun.py SCENARIO [--speed N] [--interactive]
#       [--state DIR]
#
# The board's RTC resumes from DIR/rtc, so meter time never runs backwards
# across runs on the same DIR (boards/unix/rtc.py; tools/sim.py starts each
# run from a new DIR).
#
# It starts the meter exactly as main.py does on a board: main.boot() builds
# it from DIR (config.json, secrets.json as provisioned) and leaves it running
# on the board's thread. This process's main thread then plays the world in
# front of it, as a person at the meter would: the scenario, the keyboard in
# --interactive mode, a status line every five simulated minutes. Whatever
# it does to the meter or the device models it does inside ticker.hold(), as
# a technician's command does. Requests for the head-end are printed as
# "!headend ..." lines for tools/sim.py, which plays the utility's side over
# MQTT.
import os
import sys
import json
import time
import select

import codes
import main
import service
import units
from boards.unix import rtc, scenarios
from boards.unix.otatext import ota_event

PAUSE_MS = 20           # the world's pace, in real time
STOP_CHECK = 10         # pauses between looks for DIR/sim-stop (a failed stat allocates its OSError)
DISPLAY_S = 300         # status line period, in simulated time


class _Quit(Exception):
    pass


def _boot_count(state):
    """How many times this scenario booted the meter before (DIR/sim-boots)."""
    p = state + "/sim-boots"
    try:
        with open(p) as f:
            n = int(f.read())
    except (OSError, ValueError):
        n = 0
    with open(p, "w") as f:
        f.write(str(n + 1))
    return n


def _args(argv):
    opts = {"scenario": "day", "speed": 120, "interactive": False, "state": "sim-state"}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--interactive":
            opts["interactive"] = True
        elif a == "--speed":
            i += 1
            opts["speed"] = int(argv[i])
        elif a == "--state":
            i += 1
            opts["state"] = argv[i]
        else:
            opts["scenario"] = a
        i += 1
    return opts


def _say_line(line):
    # one write per line: the meter thread prints too
    sys.stdout.write(line + "\n")


def _clock_str(t):
    return "%02d:%02d:%02d" % ((t // 3600) % 24, (t // 60) % 60, t % 60)


_TOTALS = ("delivered_ml", "credited", "moves", "shoot_through", "sent", "received", "writes")


def _load_totals(state, start):
    """The summary's counters of the boots before this one (DIR/sim-totals,
    written at each simulated reset), so a scenario of several boots sums
    them all; t0 is when the first boot started."""
    try:
        with open(state + "/sim-totals") as f:
            return json.load(f)
    except (OSError, ValueError):
        return dict({k: 0 for k in _TOTALS}, t0=start)


class Sim:
    def __init__(self, opts):
        self.opts = opts
        start = rtc.resume(opts["state"], scenarios.SCENARIOS[opts["scenario"]][0])
        self.t0 = start
        self.before = _load_totals(opts["state"], start)
        self.credited = 0
        self.link = None
        extra = {}
        if isinstance(scenarios.SCENARIOS[opts["scenario"]][1], tuple):
            # a scenario of several boots (an update resets the meter): the
            # board has the OTA flash, kept in DIR/flash across the boots
            extra = {"ota_dir": opts["state"] + "/flash", "ota_slot": 0x1A0000}
        self.session = s = main.boot("unix", ready=self._attach, state_dir=opts["state"],
                                     speed=opts["speed"], start=start, **extra)
        if s is None:
            raise SystemExit(1)      # boot() has said why
        if s.link is None:
            s.ticker.stop()
            raise SystemExit("the simulated meter has no MQTT link (see above)")
        self.hold = s.ticker.hold
        self.on_reader = None     # (name, ClassicCard) on the reader now
        self._release_at = None   # when the held button is let go
        self._tap_before = None   # the card session's last tap before this card
        self.done = False
        self._seq = 100
        self._next_display = 0
        self._pauses = 0
        self._stop_file = opts["state"] + "/sim-stop"
        self._poller = None
        self._glass = None        # the glass last drawn (RAM image, lit)
        self._frames = []         # glass images since, from the meter's thread
        if self.hw.world.lcd is not None:
            self.hw.world.lcd.on_frame = self._lcd_frame

    def _attach(self, s):
        # called by boot() before the meter's thread starts
        self.hw, self.meter, self.link, self.cards = s.hw, s.meter, s.link, s.cards
        if s.link is not None:
            s.link.on_traffic = self._traffic
        board_reset = s.hw.reset
        if board_reset is not None:
            def reset():
                # the process ends here: keep this boot's counters for the summary
                self._save_totals()
                board_reset()
            s.hw.reset = reset
        if s.hw.partitions is not None:
            # what the boot itself logged about an update (a rollback, a
            # trial), before this listener was attached
            recent = s.meter.log.recent(16)
            ups = [i for i, e in enumerate(recent) if e[2] == codes.EV_POWER_UP]
            for ev in recent[ups[-1] + 1:] if ups else ():
                if ev[2] == codes.EV_OTA:
                    self._event(ev)
            self.say("board  booted %s" % s.hw.partitions.running)
        s.meter.log.listeners.append(self._event)

    def now(self):
        return self.hw.clock.time() - self.t0

    def say(self, msg):
        _say_line("[%s] %s" % (_clock_str(self.hw.clock.time()), msg))

    def _traffic(self, direction, topic, payload):
        arrow = "mqtt >>" if direction == "out" else "mqtt <<"
        p = bytes(payload)
        self.say("%s %s %s" % (arrow, topic.decode() if isinstance(topic, bytes) else topic,
                               p[:100].decode() + ("..." if len(p) > 100 else "")))

    def _event(self, ev):
        if ev[2] == codes.EV_CREDIT:
            self.credited += ev[3]
        if ev[2] == codes.EV_OTA:
            a = ev[3]
            self.say("event  ota: " + ota_event(a))
            return
        detail = service.event_detail(ev[2], ev[3])
        self.say("event  %s (%d)%s" % (codes.event_name(ev[2]), ev[3], ": " + detail if detail else ""))

    def _card_path(self, name):
        return "%s/cards/%s.json" % (self.opts["state"], name)

    def act(self, action, arg):
        if action in ("vend", "outage", "headend", "note", "end"):
            self._request(action, arg)      # the world outside: the meter runs on
        else:
            with self.hold():
                self._touch(action, arg)

    def _touch(self, action, arg):
        m = self.meter
        if action == "card":
            from boards.unix.mifare_card import ClassicCard
            self._touch("remove", 0)
            try:
                c = ClassicCard.load(self._card_path(arg))
            except OSError:
                self.say("card   no card image %r" % arg)
                return
            self.on_reader = (arg, c)
            self._tap_before = self.cards.last if self.cards else None
            self.hw.world.reader.place(c)
            self.say("card   %s card placed on the reader" % arg)
        elif action == "remove":
            if self.on_reader:
                name, c = self.on_reader
                self.hw.world.reader.remove(c)
                c.save(self._card_path(name))     # what the meter wrote back stays on the card
                self.on_reader = None
                last = self.cards.last if self.cards else None
                self.say("card   %s card removed (last tap: %s)" % (
                    name, codes.result_name(last[0]) if last else "none"))
        elif action == "stale":
            if m.valve is not None:
                m.valve.last_move = self.hw.clock.time() - arg * 86400
                self.say("valve  last moved %d days ago: due for its anti-seize exercise" % arg)
        elif action == "emergency":
            # the customer holds the button down until the meter answers
            self.hw.button.drive(0)
            self._release_at = self.now() + 60
            self.say("user   holds the button for emergency credit")
        elif action == "flow":
            self.hw.world.flow.set_rate_lph(arg)
            self.say("water  tap set to %d L/h" % arg)
        elif action == "topup":
            self._seq += 1
            # an office adjustment: its own key space, apart from the cards'
            r = m.apply_credit("adjust", 42, self._seq, arg)
            self.say("credit %s from the office, straight into the ledger (no card, no message) -> %s"
                     % (units.money(arg), codes.result_name(r)))
        elif action == "tap":
            self.say("user   taps the button to confirm the reopening -> %s" % codes.result_name(m.confirm()))
        elif action == "release":
            self.hw.button.drive(1)
        elif action == "press":
            # a short press: at this speed the button task sees any press
            # as a long one, so the sim hands the display what the task would
            d = self.session.display
            if d is not None:
                d.press()
                self.say("user   presses the button: page %d" % d.page)

    def _request(self, action, arg):
        m = self.meter
        if action == "vend":
            # the office: tools/sim.py runs the vending tool, then answers "ok"
            _say_line("!vend %s" % arg)
            sys.stdin.readline()
        elif action == "outage":
            _say_line("!outage %s" % arg)
        elif action == "headend" and arg.startswith("topup "):
            _say_line("!headend %s" % arg)
        elif action == "headend" and arg.startswith("ota"):
            _say_line("!headend %s" % arg)     # a firmware rollout (docs/OTA.md)
        elif action == "headend":
            if arg == "tariff":
                with self.hold():
                    t = {"v": m.billing.tariff.version + 1, "at": self.hw.clock.time() + 3600,
                         "b": [[1000, 350_000], [0, 700_000]], "sc": 50_000}
                _say_line("!headend tariff %d %s" % (m.cfg["region"], json.dumps(t)))
        elif action == "note":
            self.say("note   " + arg)
        elif action == "end":
            if self.opts["interactive"]:
                self.say("note   scenario over; the meter runs on until you type quit")
            else:
                self.done = True

    def pause(self):
        """The world's idle step: real time passes, the meter runs on its
        thread meanwhile. Shows the status line when due, reads the keyboard
        in --interactive mode. Raises _Quit once the run is over, or once
        tools/sim.py, told Ctrl-C, has made DIR/sim-stop (a signal could
        kill this process: the unix port's masked Ctrl-C is SIG_DFL)."""
        time.sleep_ms(PAUSE_MS)
        self._pauses += 1
        if self._pauses % STOP_CHECK == 0:
            try:
                os.stat(self._stop_file)
                self.done = True
            except OSError:
                pass
        if self.now() >= self._next_display:
            self._next_display = self.now() + DISPLAY_S
            self.display()
        self.glass()
        if self._poller is not None:
            self.console()
        if self.done:
            raise _Quit()

    def scenario(self):
        steps = scenarios.SCENARIOS[self.opts["scenario"]][1]
        if isinstance(steps, tuple):
            steps = steps[min(_boot_count(self.opts["state"]), len(steps) - 1)]
        # times count from when the scenario starts, and a step that falls
        # due late (the host was busy) still leaves the meter a few seconds
        # to act on the previous one: a card is never pulled before a poll
        t0 = self.now()
        last = -5
        for at, action, arg in steps:
            while self.now() - t0 < at or self.now() - last < 3:
                self.pause()
            if action == "remove" and self.cards is not None:
                # a person lifts the card once the meter has beeped
                give_up = self.now() + 60
                while self.cards.last is self._tap_before and self.now() < give_up:
                    self.pause()
            last = self.now()
            self.act(action, arg)
            if self._release_at is not None:
                # the customer holds on until the meter answers (or gives up)
                while self.meter.emergency_owed == 0 and self.now() < self._release_at:
                    self.pause()
                self.act("release", 0)
                self._release_at = None
            if self.done and not self.opts["interactive"]:
                break

    def display(self):
        with self.hold():
            m = self.meter
            price = m.billing.tariff.price_at(m.billing.period_ml(m.volume.ml()))
            line = "status flow %7s L/h  vol %s m3  bal %8s  price %s/m3  valve %s%s" % (
                units.rate(m.flow_mlph), units.volume(m.volume.ml()), units.money(m.balance),
                units.money(price),
                "OPEN  " if m.want_open else "CLOSED",
                "  (tap to reopen)" if m.awaiting_confirm else "")
        self.say(line)

    def _lcd_frame(self, lcd):
        # every frame the controller model receives (the meter thread, or
        # a hold()): a changed glass is queued, so a tap's 5 s result is seen
        # however fast the simulation runs
        key = (lcd.hex() if lcd.lit else "", lcd.lit)   # a dark glass shows nothing
        if key != self._glass:
            self._glass = key
            self._frames.append((lcd.hex(), lcd.lit, lcd.ascii()))

    def glass(self):
        """Draw the LCD in the terminal each time what it shows changed, and
        hand its RAM image to tools/sim.py ("!lcd HEX LIT", for --png)."""
        with self.hold():
            frames, self._frames = self._frames, []
        for ram, lit, rows in frames:
            _say_line("!lcd %s %d" % (ram, 1 if lit else 0))
            self.say("lcd    " + rows[0])
            for r in rows[1:]:
                _say_line("           " + r)

    def console(self):
        if not self._poller.poll(0):
            return
        line = sys.stdin.readline().split()
        if not line:
            return
        cmd, arg = line[0], (line[1] if len(line) > 1 else "0")
        if cmd == "quit":
            self.done = True
        elif cmd in ("flow", "topup"):
            self.act(cmd, int(arg))
        elif cmd in ("tap", "press"):
            self.act(cmd, 0)
        elif cmd in ("card", "remove", "emergency"):
            self.act(cmd, arg)
        elif cmd == "tariff":
            self.act("headend", "tariff")
        elif cmd == "status":
            with self.hold():
                snap = self.meter.snapshot()
            _say_line(json.dumps(snap))
        else:
            _say_line("unknown command: %s" % cmd)

    def play(self):
        if self.opts["interactive"]:
            self._poller = select.poll()
            self._poller.register(sys.stdin, select.POLLIN)
            _say_line("interactive: flow <L/h> | topup <units> | tap | card <user|clone|foreign|check|forged-tariff> | remove")
            _say_line("             press | emergency | tariff | status | quit")
        try:
            self.scenario()
            while self.opts["interactive"]:
                self.pause()
        except _Quit:
            pass

    def totals(self):
        """The summary's counters over every boot of this run."""
        w, link = self.hw.world, self.link
        now = (w.flow.delivered_ml(), self.credited, w.valve.moves, w.valve.shoot_through,
               link.sent if link else 0, link.received if link else 0, self.meter.store.writes)
        t = dict(self.before)
        for k, v in zip(_TOTALS, now):
            t[k] += v
        return t

    def _save_totals(self):
        with open(self.opts["state"] + "/sim-totals", "w") as f:
            json.dump(self.totals(), f)

    def summary(self):
        m, t = self.meter, self.totals()
        charged = t["credited"] + m.emergency_owed - m.balance
        print("")
        print("== summary (%s, %d simulated s) ==" % (
            self.opts["scenario"], self.hw.clock.time() - t["t0"]))
        print("water delivered  %s m3 (metered %s m3 at K=%d/%d pulses/L)" % (
            units.volume(t["delivered_ml"]), units.volume(m.volume.ml()),
            m.volume.k_num, m.volume.k_den))
        # exact: credit - charged = balance to the unit (the status lines round down)
        print("credit applied   %s   charged %s   balance %s   emergency owed %s" % (
            units.money(t["credited"], exact=True), units.money(charged, exact=True),
            units.money(m.balance, exact=True), units.money(m.emergency_owed, exact=True)))
        print("tariff in force  v%d   valve %s, %d move%s, shoot-through %d" % (
            m.billing.tariff.version, "open" if m.want_open else "closed", t["moves"],
            "" if t["moves"] == 1 else "s", t["shoot_through"]))
        print("mqtt             %d sent, %d received   events logged %d   state writes %d" % (
            t["sent"], t["received"], m.log.seq, t["writes"]))


def run():
    opts = _args(sys.argv)
    if opts["scenario"] not in scenarios.SCENARIOS:
        print("unknown scenario %r; known: %s" % (opts["scenario"], ", ".join(scenarios.SCENARIOS)))
        sys.exit(2)
    sim = Sim(opts)
    try:
        sim.play()
    except KeyboardInterrupt:
        pass
    sim.session.ticker.stop()     # the meter thread ends after its slice
    clock = sim.hw.clock
    clock.sync()
    clock.speed = 0               # stop the simulated world, then close the books
    sim.meter.poll()
    sim.meter.save()
    rtc.save(sim.opts["state"], clock.time())
    sim.summary()


if __name__ == "__main__":    # bench/mp_ramprobe.py imports it and calls run()
    run()
