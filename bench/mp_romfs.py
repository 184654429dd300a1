# With RAMPROBE_ROMFS=IMAGE in the environment, mount that ROMFS image (the
# app as .mpy, bench/bench_ram.py romfs_image) at /rom, first on sys.path, so
# the app is imported from it as a stand-in for frozen modules. The image's
# bytes sit in the heap; returns their count (0 without an image).
import os
import sys


def mount():
    img = os.getenv("RAMPROBE_ROMFS")
    if not img:
        return 0
    import vfs
    with open(img, "rb") as f:
        rom = f.read()
    vfs.mount(vfs.VfsRom(rom), "/rom")
    sys.path.insert(0, "/rom")
    return len(rom)
