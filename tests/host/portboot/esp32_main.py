# The ESP32 port's start-up (ports/esp32/main.c, mp_task) on the unix port,
# for the tests of the frozen _boot.py: the frozen _boot.py runs first, its
# failure only printed; then boot.py, and main.py only if boot.py ended
# normally; then the REPL (micropython -i). Before each file the port turns
# Ctrl-C on (pyexec). On the chip the app is frozen, so it stays importable
# whatever _boot.py mounts at "/": here the host's filesystem moves to /host
# first, and the module path with it. $PORT_FILES: _boot.py:boot.py:main.py.
import os
import sys

import micropython
import vfs

vfs.umount("/")
vfs.mount(vfs.VfsPosix("/"), "/host")
sys.path[:] = ["/host" + p if p.startswith("/") else p for p in sys.path]
_files = ["/host" + p for p in os.getenv("PORT_FILES").split(":")]


def _run(path):
    with open(path) as f:
        code = compile(f.read(), path, "exec")   # frozen on the chip: compiled before
    micropython.kbd_intr(3)
    try:
        exec(code, {"__name__": "__main__"})
        return True
    except BaseException as e:  # noqa: BLE001 - the port prints it and goes on
        sys.print_exception(e)
        return False


_run(_files[0])
if _run(_files[1]):
    _run(_files[2])
