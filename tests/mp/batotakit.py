# Firmware updates on a battery meter, the rig (tests/mp/test_battery_ota.py,
# bench/bench_ota_battery.py): the simulated battery board
# (boards/unix_battery.py) with the modelled OTA flash
# (boards/unix/ota_model.py), whose bootloader runs at every wake, woken and
# put to sleep by hand; the head-end is played on commskit's fake broker,
# answering block requests at a set rate.
import json

import boards
import codes
import main
import wake
from boards.unix_battery import Plant, Reset
from comms.link import MqttLink
from commskit import Broker, FakeClient, MK
from ota import updater as up
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
import officekit
import otakit

DAY = 86400
SLOT = 262144
PIECE = otakit.PIECE


class _RT:
    """The link's real-time source on the plant's virtual clock."""

    def __init__(self, clock):
        self.c = clock

    @property
    def ms(self):
        return self.c.ticks_ms()

    def ticks_ms(self):
        return self.c.ticks_ms()

    def ticks_diff(self, a, b):
        return self.c.ticks_diff(a, b)

    def ticks_add(self, a, d):
        return self.c.ticks_add(a, d)


class HeadEnd(Broker):
    """The broker and the head-end behind it: a retained manifest sent at
    every SUBSCRIBE of its topic, and the pieces of each block the meter
    asks for, delivered at `rate` bytes a second (None: not at all)."""

    def __init__(self, clock):
        super().__init__(_RT(clock))
        self.clock = clock
        self.retained = None
        self.image = None
        self.rate = 20_000
        self.gap_ms = 250        # tools/rollout.py's block_gap_s: a request sooner after the last served is dropped
        self.served_at = None
        self.requests = 0
        self.queue = []          # (due ms, topic, payload)
        # each connect attempt holds the link step this long on the virtual
        # clock (a blackholed SYN, a TLS handshake dribbled to the socket's
        # timeout), then fails while `up` is False
        self.connect_ms = 0

    def due(self):
        now = self.clock.ticks_ms()
        while self.queue and self.queue[0][0] <= now:
            _, t, p = self.queue.pop(0)
            self.pending.append((t, p))


def _read(img, o, k):
    # bytes, or otakit.FileImage (an image larger than the unix port's heap)
    return img.read(o, k) if hasattr(img, "read") else img[o:o + k]


class _Client(FakeClient):
    def open(self, clean_session=True):
        if self.b.connect_ms:
            self.b.clock.advance(self.b.connect_ms)
        super().open(clean_session)

    def subscribe(self, topic, qos=0):
        pid = super().subscribe(topic, qos)
        if bytes(topic) == b"r/1/ota/unix" and self.b.retained is not None:   # the board's manifest topic
            self.b.pending.append((bytes(topic), self.b.retained))
        return pid

    def publish(self, topic, msg, retain=False, qos=0):
        pid = super().publish(topic, msg, retain, qos)
        b = self.b
        if bytes(topic).endswith(b"/or") and b.image is not None and b.rate:
            r = json.loads(msg)
            b.requests += 1
            t = b.clock.ticks_ms()
            if b.served_at is not None and t - b.served_at < b.gap_ms:
                return pid
            b.served_at = t
            for o in range(r["o"], r["o"] + r["n"], PIECE):
                k = min(PIECE, r["o"] + r["n"] - o)
                t += k * 1000 // b.rate
                b.queue.append((t, bytes(topic)[:-1], b"D" + o.to_bytes(4, "big") + _read(b.image, o, k)))
        return pid

    def poll(self, room=8):
        self.b.due()
        super().poll(room)


class Rig:
    """A battery meter with OTA slots, woken and put to sleep by hand."""

    def __init__(self, window_s=DAY, cell_mv=None, slot=SLOT):
        self.d = fresh_dir("bota")
        self.plant = Plant(ota_dir=self.d + "/flash", ota_slot=slot, cell_mv=cell_mv)
        self.he = HeadEnd(self.plant.clock)
        self.window_s = window_s
        self.radio = []          # (unix s, radio ms) of each window
        self.events = []         # every EV_OTA argument, across the boots (the RAM ring keeps 64)
        self.boot()

    def boot(self):
        hw = boards.load("unix_battery").build(state_dir=self.d, plant=self.plant, ulp_binary=binary())
        cfg = make_cfg(friendly_hours=[0, 0], friendly_days=[], window_s=self.window_s,
                       mqtt={"host": "x", "port": 1, "tls": False, "keepalive": 60})
        self.m = main.assemble(hw, cfg)
        self.m.attach_office(officekit.keys())
        self.m.log.listeners.append(self._event)
        self.hw = hw
        return self.m

    def _event(self, ev):
        if ev[2] == codes.EV_OTA:
            self.events.append(ev[3])

    def _link(self, m, hw):
        he = self.he

        def factory(cid, host, port, ka, user=None, pw=None):
            return _Client(he, cid, host, port, ka, user, pw)

        self.link = MqttLink(m.cfg, m, hw.net, hw.clock, factory, MK, "u", "p", hw.state_dir,
                             None, he.rt, None)
        return self.link

    def wake(self):
        """One wake: its work (a window when due), then the deep sleep; a
        reset (a switch, a failed trial) boots again at once and that wake
        follows. Windows (and wakes cut by a reset) are noted in `radio`."""
        m, hw = self.m, self.hw
        used = m.cell.used
        t = self.plant.clock.time()
        opened = m.window.due(hw.wake_reason, t, m.cfg["tz"]) or \
            (hw.partitions is not None and up.Updater(m, hw.partitions, "unix", hw.state_dir).state in (3, 4, 5))
        t_ms = self.plant.clock.now_ms()
        try:
            ms = wake.work(m, hw, self._link, None, "unix")
        except Reset:
            self.radio.append((t, self.plant.clock.now_ms() - t_ms))
            assert m.cell.used > used
            self.boot()
            return self.wake()
        if opened:
            self.radio.append((t, self.plant.clock.now_ms() - t_ms))
        self.plant.deepsleep(ms)
        self.boot()
        return ms

    def until(self, t):
        while self.plant.clock.time() < t:
            self.wake()

    def ota_events(self, step=None):
        return [e for e in self.events if step is None or e & 0xFF == step]

    def state(self):
        return up.Updater(self.m, self.hw.partitions, "unix", self.d).state
