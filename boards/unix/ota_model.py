# The ESP32's OTA flash, modelled on the unix board: two app slots and the
# otadata partition as files, behind the esp32.Partition interface the
# firmware sees on the chip (docs/OTA.md §2). The model keeps nothing in RAM
# that the chip keeps in flash: a reboot of the model is a new OtaFlash over
# the same directory, so a process killed at any point boots from what the
# files hold.
#
# otadata: two 32-byte entries (esp_ota_select_entry_t: ota_seq u32,
# seq_label[20], ota_state u32, crc u32, little-endian), each in its own
# 4 KiB sector, written one at a time. The CRC covers ota_seq. The
# bootloader boots slot (seq - 1) % 2 of the valid entry with the highest
# seq; no valid entry boots ota_0 (ota_1 if ota_0's image does not check). With CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
# (ESP-IDF bootloader_utility.c): an entry in state NEW is set to
# PENDING_VERIFY and booted; an entry found still PENDING_VERIFY (the image
# booted once and never confirmed itself) is set to ABORTED and the other
# entry's slot boots instead.
#
# App image, as the model checks it (a simplified ESP image): byte 0 is the
# magic 0xE9, bytes 4..8 the body length L (u32 LE), then L body bytes and
# the SHA-256 of bytes 0..8+L (the image's appended hash). Byte 1 is this
# model's own: FAULT_* below, a defect of the code in the image that the
# unix board turns into a device that misbehaves (a broken card driver).
import hashlib
import os
import struct
from binascii import crc32

BLOCK = const(4096)
SLOT_SIZE = const(0x1A0000)       # docs/OTA.md: 1.625 MiB per slot on a 4 MB flash
IMG_MAGIC = const(0xE9)
IMG_HEAD = const(8)

ST_NEW = const(0)
ST_PENDING = const(1)
ST_VALID = const(2)
ST_INVALID = const(3)
ST_ABORTED = const(4)
ST_UNDEFINED = const(0xFFFFFFFF)

FAULT_NONE = const(0)
FAULT_CARD = const(1)             # the image's card driver cannot talk to the reader

_ENTRY = "<I20sII"


class PowerCut(BaseException):
    """Raised by the model where a cut was armed: the chip stops here. A
    BaseException, so no `except Exception` in the firmware survives it."""


def make_image(body, fault=FAULT_NONE):
    """An app image the model's bootloader accepts, around body bytes."""
    head = bytes((IMG_MAGIC, fault, 0, 0)) + struct.pack("<I", len(body))
    return head + body + hashlib.sha256(head + body).digest()


class OtaFlash:
    """The flash of one simulated board. cut_after: the number of flash
    operations (block erases, block writes, otadata writes) that complete
    before the power goes; None never. A cut write leaves half the data
    written."""

    RUNNING = 0          # esp32.Partition.RUNNING

    def __init__(self, directory, slot_size=SLOT_SIZE, cut_after=None):
        self.dir = directory
        self.slot_size = slot_size
        self.cut_after = cut_after
        self.ops = 0                 # flash operations since power-up
        self.block_writes = 0        # blocks programmed
        self.erases = 0              # blocks erased by ioctl(6)
        self.running = None          # label of the slot the bootloader chose
        for label in ("ota_0", "ota_1"):
            p = self._path(label)
            try:
                os.stat(p)
            except OSError:
                erased = b"\xff" * BLOCK
                with open(p, "wb") as f:
                    for _ in range(slot_size // BLOCK):
                        f.write(erased)
        try:
            os.stat(self._path("otadata"))
        except OSError:
            with open(self._path("otadata"), "wb") as f:
                f.write(b"\xff" * 64)

    def _path(self, label):
        return "%s/%s.bin" % (self.dir, label)

    def _op(self):
        if self.cut_after is not None and self.ops >= self.cut_after:
            raise PowerCut("power cut at flash operation %d" % self.ops)
        self.ops += 1

    # ---------------- otadata ----------------
    def entries(self):
        """[(seq, state)] of the two entries; seq 0 for an invalid one."""
        with open(self._path("otadata"), "rb") as f:
            raw = f.read()
        out = []
        for i in (0, 1):
            seq, _label, state, crc = struct.unpack_from(_ENTRY, raw, 32 * i)
            ok = seq not in (0, 0xFFFFFFFF) and crc == crc32(struct.pack("<I", seq))
            out.append((seq, state) if ok else (0, ST_UNDEFINED))
        return out

    def _write_entry(self, i, seq, state):
        self._op()
        with open(self._path("otadata"), "rb") as f:
            raw = bytearray(f.read())
        struct.pack_into(_ENTRY, raw, 32 * i, seq, b"\xff" * 20, state,
                         crc32(struct.pack("<I", seq)))
        with open(self._path("otadata") + ".new", "wb") as f:
            f.write(raw)
        os.rename(self._path("otadata") + ".new", self._path("otadata"))

    def _selected(self):
        e = self.entries()
        best = 0 if e[0][0] >= e[1][0] else 1
        return best, e

    # ---------------- the bootloader ----------------
    def boot(self):
        """What the second-stage bootloader does at reset: choose the slot,
        apply the rollback rules, check the image. Returns the label booted."""
        self.ops = 0
        best, e = self._selected()
        order = []
        if e[best][0]:
            seq, state = e[best]
            if state == ST_PENDING:
                self._write_entry(best, seq, ST_ABORTED)
            elif state == ST_NEW:
                self._write_entry(best, seq, ST_PENDING)
            if state not in (ST_PENDING, ST_ABORTED, ST_INVALID):
                order.append((seq - 1) % 2)
            other = 1 - best
            if e[other][0] and e[other][1] not in (ST_ABORTED, ST_INVALID):
                order.append((e[other][0] - 1) % 2)
        # no entry to follow, or its image does not check: the IDF's
        # bootloader_utility_load_boot_image tries the app slots in turn
        order += [0, 1]
        for slot in order:
            label = "ota_%d" % slot
            if self.image_ok(label):
                self.running = label
                return label
        raise RuntimeError("no bootable app image")

    def image_ok(self, label):
        return self.image_info(label) is not None

    def image_info(self, label):
        """(body length, fault) of a valid image in the slot, else None."""
        with open(self._path(label), "rb") as f:
            head = f.read(IMG_HEAD)
            if len(head) < IMG_HEAD or head[0] != IMG_MAGIC:
                return None
            n = struct.unpack_from("<I", head, 4)[0]
            if IMG_HEAD + n + 32 > self.slot_size:
                return None
            h = hashlib.sha256(head)
            left = n
            while left:
                b = f.read(min(left, BLOCK))
                h.update(b)
                left -= len(b)
            if f.read(32) != h.digest():
                return None
        return n, head[1]

    # ---------------- esp32.Partition ----------------
    def __call__(self, which):
        if which == self.RUNNING:
            return SimPartition(self, self.running)
        return SimPartition(self, which)     # by label, as Partition("ota_0")

    def mark_app_valid_cancel_rollback(self):
        best, e = self._selected()
        if e[best][0] and (e[best][0] - 1) % 2 == int(self.running[-1]) \
                and e[best][1] != ST_VALID:
            self._write_entry(best, e[best][0], ST_VALID)


class SimPartition:
    """esp32.Partition over one slot file: 4096-byte blocks."""

    def __init__(self, flash, label):
        self.flash = flash
        self.label = label

    def info(self):
        # (type, subtype, addr, size, label, encrypted), as on the chip
        return (0, 0x10 + int(self.label[-1]), 0x10000 + int(self.label[-1]) * self.flash.slot_size,
                self.flash.slot_size, self.label, False)

    def get_next_update(self):
        return SimPartition(self.flash, "ota_%d" % (1 - int(self.label[-1])))

    def ioctl(self, cmd, arg):
        if cmd == 4:
            return self.flash.slot_size // BLOCK
        if cmd == 5:
            return BLOCK
        if cmd == 6:                 # erase block arg (a cut leaves it erased too)
            fl = self.flash
            fl._op()
            with open(fl._path(self.label), "r+b") as f:
                f.seek(arg * BLOCK)
                f.write(b"\xff" * BLOCK)
            fl.erases += 1
        return 0

    def readblocks(self, block, buf, offset=0):
        with open(self.flash._path(self.label), "rb") as f:
            f.seek(block * BLOCK + offset)
            f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        # esp32_partition.c: writeblocks(n, buf) erases the block, then
        # writes it; writeblocks(n, buf, offset) only programs, over a block
        # erased before with ioctl(6, n). Programming NOR flash only clears
        # bits: the model stores old & new, so a missing erase shows.
        fl = self.flash
        if (block + 1) * BLOCK > fl.slot_size or (offset is None and len(buf) != BLOCK):
            raise OSError(22)
        cut = fl.cut_after is not None and fl.ops >= fl.cut_after
        at = block * BLOCK + (offset or 0)
        with open(fl._path(self.label), "r+b") as f:
            f.seek(at)
            old = b"\xff" * len(buf) if offset is None else f.read(len(buf))
            new = bytes(a & b for a, b in zip(old, buf))
            f.seek(at)
            f.write(new[:len(new) // 2] if cut else new)
        fl._op()
        fl.block_writes += 1

    def set_boot(self):
        # esp_ota_set_boot_partition: the image is verified first, then the
        # otadata entry that does not hold the highest seq gets seq + 1
        # (chosen so that (seq - 1) % 2 is this slot), state NEW
        fl = self.flash
        if not fl.image_ok(self.label):
            raise OSError(-5379)     # ESP_ERR_OTA_VALIDATE_FAILED
        best, e = fl._selected()
        slot = int(self.label[-1])
        seq = e[best][0] + 1
        if (seq - 1) % 2 != slot:
            seq += 1
        fl._write_entry(1 - best if e[best][0] else 0, seq, ST_NEW)
