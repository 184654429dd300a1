# Freeze the meter app into a custom MicroPython build (manufacturing).
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/repo/tools/manifest.py \
#        METER_BOARD=esp32_devkitc
#
# Frozen modules run from flash: their bytecode, constant strings and qstrs
# are not copied into the heap when imported, and nothing is compiled on the
# device. Then only the app's objects (meter state, buffers, the event ring)
# use the heap. See docs/SERVICE.md, "RAM", for the figures. On the
# filesystem stay main.py, board.txt and the state directory.
#
# The functions used here (include, freeze, require, module) are provided by
# MicroPython's build (tools/manifestfile.py); this file is not run by Python.
import os

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOARD = os.environ.get("METER_BOARD", "esp32_devkitc")

include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - the port's own frozen modules
require("umqtt.simple")  # noqa: F821 - from micropython-lib
_FW = os.path.join(_REPO, "firmware")
for _name in sorted(os.listdir(_FW)):
    if _name.endswith(".py") and _name != "main.py":
        module(_name, base_path=_FW)  # noqa: F821
    elif os.path.isfile(os.path.join(_FW, _name, "__init__.py")):
        package(_name, base_path=_FW)  # noqa: F821
package("boards", files=["__init__.py", "ticker.py", "validate.py", "esp32_common.py",  # noqa: F821
                         f"{_BOARD}.py"], base_path=_REPO)
# main.py stays a file on the device (copy it and board.txt with mpremote,
# or run flash.py deploy): MicroPython runs /main.py as __main__ at boot.
