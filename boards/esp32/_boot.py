# The production image's _boot.py: tools/manifest.py freezes it into every
# ESP32 image in place of the port's own (ports/esp32/modules/_boot.py).
#
# The port runs the frozen _boot.py first at every boot, with Ctrl-C on, and
# only then boot.py and main.py. The port's own mounts the filesystem; a
# Ctrl-C before its mount leaves the meter without board.txt, config and
# secrets, so main.py boots a development meter and the REPL opens
# (docs/SECURITY.md P11b). So this one masks Ctrl-C first, as main.py and
# boot.py do (a Ctrl-C already pending is raised at the loop's jump inside
# the try, and spent there), and only then mounts what the port mounts: the
# flash partition's block device (flashbdev.bdev, None without a filesystem
# partition) at "/". The port turns Ctrl-C on again for boot.py, whose first
# statements mask it again.
#
# Unlike the port's, a filesystem that does not mount is never a reason to
# turn Ctrl-C on: an erased partition (the first boot) is formatted here, a
# damaged one is reported and the boot goes on closed.


def _mask_ctrl_c():
    import micropython
    micropython.kbd_intr(-1)
    for _ in (0, 1):   # a jump: the VM raises a pending KeyboardInterrupt here
        pass


try:
    _mask_ctrl_c()
except BaseException:  # noqa: BLE001 - a Ctrl-C from before the mask, spent
    try:
        _mask_ctrl_c()
    except BaseException:  # noqa: BLE001
        pass


def _erased(bdev):
    # a partition never written reads all 0xFF (NOR flash after erase)
    buf = bytearray(bdev.ioctl(5, 0))     # 5: the block size
    bdev.readblocks(0, buf)
    for b in buf:
        if b != 0xFF:
            return False
    return True


def _format(vfs, bdev):
    # the partition's label says which filesystem the port's table gives it
    # ("vfs": littlefs v2; "ffat": FAT, TinyUF2's layout)
    kind = vfs.VfsFat if bdev.info()[4] == "ffat" else vfs.VfsLfs2
    kind.mkfs(bdev)
    return kind(bdev)


def _mount():
    import vfs
    from flashbdev import bdev
    if not bdev:
        return
    try:
        vfs.mount(bdev, "/")
        return
    except OSError:
        pass
    if not _erased(bdev):
        print("FILESYSTEM DAMAGED: not mounted, not formatted (the meter's state may be"
              " recoverable from a flash dump). Call a technician.")
        return
    print("first boot: formatting the filesystem")
    vfs.mount(_format(vfs, bdev), "/")


_mount()
import gc  # noqa: E402
gc.collect()
