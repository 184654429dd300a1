# The ESP32's filesystem partition on the unix port, for the tests of the
# frozen _boot.py (boards/esp32/_boot.py): the hardware boundary. Same
# surface as the port's flashbdev module: `bdev`, a block device of 4 KiB
# erase blocks (readblocks/writeblocks with a byte offset, ioctl 1-6, info()
# whose [4] is the partition label), or None without a partition. Backed by
# an image file ($FLASH_IMAGE); erased flash reads 0xFF. $FLASH_SLOW_MS makes
# the first read that slow and announces it ("flash: busy"), so a test can
# put a Ctrl-C in the middle of the mount. No allocation in the read/write
# path: the VFS may call it with the heap locked.
import os
import time

BLOCK = 4096
_ERASED = b"\xff" * BLOCK


class FileFlash:
    def __init__(self, path, slow_ms=0):
        self._f = open(path, "r+b")
        self._blocks = self._f.seek(0, 2) // BLOCK
        self._slow = slow_ms

    def readblocks(self, block, buf, off=0):
        if self._slow:
            slow, self._slow = self._slow, 0
            print("flash: busy")
            time.sleep_ms(slow)
        self._f.seek(block * BLOCK + off)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        if off is None:                  # a whole-block write erases first
            for i in range(len(buf) // BLOCK):
                self.ioctl(6, block + i)
            off = 0
        self._f.seek(block * BLOCK + off)
        self._f.write(buf)

    def ioctl(self, op, arg):
        if op == 3:                      # sync
            self._f.flush()
        elif op == 4:                    # block count
            return self._blocks
        elif op == 5:                    # block size
            return BLOCK
        elif op == 6:                    # erase
            self._f.seek(arg * BLOCK)
            self._f.write(_ERASED)
        return 0

    def info(self):
        return (0, 1, 0x82, 0x9000, "vfs", False)   # type, subtype, offset, size, label, encrypted


_path = os.getenv("FLASH_IMAGE")
bdev = FileFlash(_path, int(os.getenv("FLASH_SLOW_MS") or 0)) if _path else None
