# Firmware-update tests: a meter on the unix board with the modelled OTA
# flash (boards/unix/ota_model.py), its link on commskit's broker, and the
# head-end's side played here: signed manifests and answers to the meter's
# block requests. A reset of the board is a Reset raised from hw.reset; a
# reboot builds a new board, meter and link over the same directories.
import hashlib
import json
from binascii import hexlify

import codes
import ota
from boards.unix import ota_model
from commskit import make_link, events
from ota import updater as up
from mptest import fresh_dir
import officekit

SLOT = 65536          # bytes per app slot in the tests (1.625 MiB on the board)
CS = 16384            # chunk size of the tests' manifests
PIECE = 2048          # bytes of image per message, as tools/headend.py sends them


class Reset(BaseException):
    """hw.reset was called: the chip restarts here."""


def image(n=40000, fault=0, seed=b"v2"):
    body = bytearray(n)
    h = hashlib.sha256(seed).digest()
    for i in range(n):
        body[i] = h[i % 32] ^ (i & 0xFF)
    return ota_model.make_image(bytes(body), fault)


def manifest_doc(img, v=2, board="unix", cs=CS, g=3, bat=0, **extra):
    ch = [hexlify(hashlib.sha256(img[i:i + cs]).digest()).decode() for i in range(0, len(img), cs)]
    d = {"k": "ota", "v": v, "b": board, "sz": len(img), "h": hexlify(hashlib.sha256(img).digest()).decode(),
         "cs": cs, "ch": ch, "bat": bat, "g": g}
    d.update(extra)
    return json.dumps(d).encode()


def signed(body, d=officekit.TEST_D):
    return officekit.message(b"ota", body, d)


class FileImage:
    """An app image of n bytes as the unix flash model checks it, kept in a
    file (the unix port's default heap is smaller than the image)."""

    def __init__(self, n, path="/tmp/bench-ota.img"):
        import struct
        self.path = path
        body_n = n - 40
        head = bytes((0xE9, 0, 0, 0)) + struct.pack("<I", body_n)
        h = hashlib.sha256(head)
        blk = bytearray(4096)
        with open(path, "wb") as f:
            f.write(head)
            done = 0
            while done < body_n:
                k = min(4096, body_n - done)
                for i in range(k):
                    blk[i] = ((done + i) * 131 + ((done + i) >> 8)) & 0xFF
                h.update(memoryview(blk)[:k])
                f.write(memoryview(blk)[:k])
                done += k
            f.write(h.digest())
        self.n = n

    def __len__(self):
        return self.n

    def read(self, o, k):
        with open(self.path, "rb") as f:
            f.seek(o)
            return f.read(k)

    def manifest(self):
        cs = 65536
        whole = hashlib.sha256()
        ch = []
        for o in range(0, self.n, cs):
            h = hashlib.sha256()
            for b in range(o, min(o + cs, self.n), 4096):
                c = self.read(b, min(4096, self.n - b))
                whole.update(c)
                h.update(c)
            ch.append(hexlify(h.digest()).decode())
        d = {"k": "ota", "v": 2, "b": "unix", "sz": self.n, "h": hexlify(whole.digest()).decode(),
             "cs": cs, "ch": ch, "bat": 0, "g": 3}
        return json.dumps(d).encode()


class Rig:
    """One simulated meter with OTA slots, rebootable from its files."""

    def __init__(self, cut_after=None):
        self.state_dir = fresh_dir("ota")
        self.ota_dir = self.state_dir + "/flash"
        self.boots = 0
        self._cause = "power"
        self.boot(cut_after)

    def boot(self, cut_after=None, cause=None, no_link=False):
        """The chip starts again. cause: machine.reset_cause() as the board
        reports it; by default "reset" after hw.reset, else "power" (a
        power cut, the power switch). no_link: this image's boot could not
        make its MQTT link (main.make_link raised)."""
        cause, self._cause = cause or self._cause, "power"
        self.link, self.m, self.hw, self.b, self.rt = make_link(
            self.state_dir, board_opts={"ota_dir": self.ota_dir, "ota_slot": SLOT, "wake_reason": cause})
        self.boots += 1
        self.hw.reset = self._reset
        self.flash = self.hw.partitions
        self.flash.cut_after = cut_after
        self.flash.block_writes = 0       # the factory image is not the update's
        self.ota = ota.attach(self.m, self.hw, None if no_link else self.link, "unix")
        self.img = None

    def _reset(self):
        self._cause = "reset"
        raise Reset()

    def running(self):
        return self.flash.running

    def offer(self, msg, topic=None):
        self.b.pending.append((topic or self.link.t_ota, msg))

    def serve(self, img, steps=400, flow_lph=0, poll=True):
        """Run the link for up to steps steps, 100 ms apart, answering the
        meter's block requests from img; the meter's loop runs between
        (water flowing at flow_lph). Returns when the updater is idle."""
        self.hw.world.flow.set_rate_lph(flow_lph)
        seen = len(self.b.published)
        for _ in range(steps):
            self.rt.ms += 100
            self.hw.clock.advance(100)
            if poll:
                self.m.poll()
            self.link.step()
            for t, p, _, _ in self.b.published[seen:]:
                if t == self.link.t_ota_req:
                    r = json.loads(p)
                    for o in range(r["o"], r["o"] + r["n"], PIECE):
                        k = min(PIECE, r["o"] + r["n"] - o)
                        self.offer(b"D" + o.to_bytes(4, "big") + img[o:o + k])
            seen = len(self.b.published)
            u = self.ota.updater
            if u.state == 0 and not u.checking and not self.b.pending:
                return

    def ota_events(self, step=None):
        return [e[3] for e in events(self.m, codes.EV_OTA) if step is None or e[3] & 0xFF == step]


def still_meters(rig, litres=2):
    """The meter on this rig counts water and charges it."""
    m, hw = rig.m, rig.hw
    ml0, bal0 = m.volume.ml(), m.balance
    hw.world.flow.set_rate_lph(600)
    for _ in range(litres * 6):
        hw.clock.advance(1000)
        m.poll()
    hw.world.flow.set_rate_lph(0)
    hw.clock.advance(1000)
    m.poll()
    return m.volume.ml() - ml0 >= litres * 1000 * 9 // 10 and (m.balance < bal0 or bal0 <= 0)


def credit(rig):
    rig.m.apply_credit("mqtt", 1, rig.boots, 100_000)
    rig.m.confirm()                 # the customer's tap: the valve opens


def credited():
    """A new rig whose meter has credit and its valve open."""
    rig = Rig()
    credit(rig)
    return rig


def version(v):
    """Version v's image (seeded b"v<v>") and its signed manifest."""
    img = image(seed=b"v%d" % v)
    return img, signed(manifest_doc(img, v=v))


def serve_until_reset(rig, img, why=None, **serve):
    """Serve img (Rig.serve's steps, flow_lph, poll) until the meter resets:
    True. If it never does, False; or, with why, the test fails with why
    and the meter's OTA events."""
    try:
        rig.serve(img, **serve)
    except Reset:
        return True
    if why:
        raise AssertionError("%s: %r" % (why, rig.ota_events()))
    return False


def download(rig, img, msg=None):
    """Offer the manifest and serve the image until set_boot resets."""
    rig.offer(msg or signed(manifest_doc(img)))
    return serve_until_reset(rig, img)


def downloaded(rig, v):
    """Version v downloaded and switched to (the reset before its first
    boot). Returns its image and manifest."""
    img, msg = version(v)
    assert download(rig, img, msg), rig.ota_events()
    return img, msg


def update(rig, img, msg=None):
    assert download(rig, img, msg), rig.ota_events()
    rig.boot()                      # the new image's first boot: trial
    assert rig.ota.updater.state == up.TRIAL
    if serve_until_reset(rig, img, steps=20):
        rig.boot()
        return False
    return True


def updated(rig, v):
    """Version v downloaded, its trial passed and confirmed. Returns its
    image."""
    img, msg = version(v)
    assert update(rig, img, msg), rig.ota_events()
    return img
