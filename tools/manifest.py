# Freeze the meter app into a MicroPython firmware image (docs/BUILD.md).
#
#   cd micropython/ports/esp32
#   METER_BOARD=esp32_devkitc make BOARD_DIR=$REPO/boards/esp32/idf/ESP32_GENERIC FROZEN_MANIFEST=$REPO/tools/manifest.py
#
#   cd micropython/ports/unix                    # the 32-bit RAM build (make ram32)
#   METER_BOARD=unix make MICROPY_FORCE_32BIT=1 FROZEN_MANIFEST=$REPO/tools/manifest.py ...
#
# Frozen modules run from flash: their bytecode, constant strings and qstrs are
# not copied into the heap when imported, and nothing is compiled on the
# device; only the app's objects use the heap. boot.py and main.py are frozen
# too: at boot the port runs a frozen boot.py and main.py before looking at the
# filesystem (shared/runtime/pyexec.c, pyexec_file_if_exists), with Ctrl-C
# handled as for the files; that keeps main.py's ~5 kB of bytecode out of the
# heap, and a file on the filesystem cannot replace them. On the filesystem
# stay board.txt and the state.
#
# MicroPython's build runs this file with tools/manifestfile.py, not as a
# script: there is no __file__, and the working directory is this file's
# folder while it runs, so every path below is relative to tools/. The
# functions (include, require, module, package) come from that loader.
import os

if "include" not in globals():      # run as a script: say how it is used, not a NameError
    import sys
    print("usage: cd MPY_SRC/ports/esp32 && METER_BOARD=esp32_devkitc make "
          "BOARD_DIR=$REPO/boards/esp32/idf/ESP32_GENERIC FROZEN_MANIFEST=$REPO/tools/manifest.py\n\n"
          "tools/manifest.py is a MicroPython freeze manifest, read by the port's build, "
          "not a command (docs/BUILD.md)",
          file=sys.stdout if {"-h", "--help"} & set(sys.argv[1:]) else sys.stderr)
    sys.exit(0 if {"-h", "--help"} & set(sys.argv[1:]) else 2)

_BOARD = os.environ.get("METER_BOARD", "esp32_devkitc")
_FW = "../firmware"

if _BOARD == "unix":
    # the unix port's own manifest pulls micropython-lib tools the meter does
    # not use; asyncio is the one frozen module the firmware needs from it.
    # umqtt.simple: the copy the test suite runs (tools/fetch_umqtt.py put it
    # in build/lib), else micropython-lib's from the tree being built
    include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821
    if os.path.isfile("../build/lib/umqtt/simple.py"):
        package("umqtt", files=["simple.py"], base_path="../build/lib")  # noqa: F821
    else:
        require("umqtt.simple")  # noqa: F821
else:
    # what the meter needs of the port's own manifest (ports/esp32/boards/
    # manifest.py): asyncio, networking, umqtt.simple from the tree's
    # micropython-lib, and of the port's modules the flash block device and
    # machine's Python half, but not its _boot.py: ours (boards/esp32/_boot.py)
    # masks Ctrl-C before it mounts the filesystem (docs/SECURITY.md P11b).
    # The loader has no way to leave one file of a directory out, and two
    # _boot.py would not build, so the port's modules are named one by one.
    for _name in ("flashbdev.py", "machine.py"):
        module(_name, base_path="$(PORT_DIR)/modules")  # noqa: F821
    module("_boot.py", base_path="../boards/esp32")  # noqa: F821
    include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821
    require("bundle-networking")  # noqa: F821
    require("umqtt.simple")  # noqa: F821

for _name in sorted(os.listdir(_FW)):
    if _name.endswith(".py"):
        module(_name, base_path=_FW)  # noqa: F821
    elif os.path.isfile(os.path.join(_FW, _name, "__init__.py")):
        package(_name, base_path=_FW)  # noqa: F821

_BOARD_FILES = ["__init__.py", "ticker.py", "tls.py", "validate.py"]
if _BOARD == "unix":
    # the simulated board, and simrun.py, the simulator's script: frozen, its
    # bytecode is not in the heap the RAM bench measures (bench/mp_ramprobe.py
    # imports it); tools/sim.py without the probe still runs it as a file
    _BOARD_FILES += ["unix/" + n for n in sorted(os.listdir("../boards/unix")) if n.endswith(".py")]
elif os.path.isfile(f"../boards/{_BOARD}.py"):
    # and the boards/ modules a board imports besides esp32_common
    _BOARD_FILES += ["esp32_common.py", _BOARD + ".py"] + {"esp32_battery": ["ulp.py"]}.get(_BOARD, [])
else:
    raise ValueError(f"METER_BOARD={_BOARD}: no boards/{_BOARD}.py")
package("boards", files=_BOARD_FILES, base_path="..")  # noqa: F821
