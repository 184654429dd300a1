"""tools/flash.py firmware with a fake esptool on PATH (the only part that
needs a real chip): image checks, the erase/write/verify sequence, errors."""

import os
import subprocess
import sys

import pytest
from ptymeter import ROOT

FLASH = [sys.executable, str(ROOT / "tools" / "flash.py")]

FAKE = """#!%s
import os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
chip = sys.argv[sys.argv.index("--chip") + 1]
real = os.environ.get("FAKE_CHIP", chip)
if real != chip:
    print("Connecting....")
    print("A fatal error occurred: This chip is %%s, not %%s. Wrong --chip argument?" %% (real.upper(), chip.upper()))
    sys.exit(2)
if "verify-flash" in sys.argv and os.environ.get("FAKE_VERIFY_FAIL"):
    print("A fatal error occurred: Verification failed.")
    sys.exit(2)
print("ok", sys.argv[1:][-3:])
"""


def image(path, chip_id):
    head = bytearray(32)
    head[0] = 0xE9
    head[12] = chip_id & 0xFF
    head[13] = chip_id >> 8
    path.write_bytes(bytes(head) + b"\0" * 1024)
    return path


@pytest.fixture
def fake(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    exe = bin_ / "esptool"
    exe.write_text(FAKE % sys.executable)
    exe.chmod(0o755)
    log = tmp_path / "esptool.log"

    def call(*args, **env):
        e = dict(os.environ, PATH="{}:{}".format(bin_, os.environ["PATH"]), FAKE_LOG=str(log), **env)
        p = subprocess.run(FLASH + ["firmware", "--port", "/dev/ttyUSB9"] + list(args),
                           capture_output=True, text=True, env=e, timeout=30, check=False)
        calls = log.read_text().splitlines() if log.exists() else []
        return p, calls
    return call


def test_erase_write_verify_in_order(fake, tmp_path):
    img = image(tmp_path / "ESP32_GENERIC.bin", 0)
    p, calls = fake("--chip", "esp32", "--image", str(img))
    assert p.returncode == 0, p.stdout + p.stderr
    assert [c.split()[6] for c in calls] == ["erase-flash", "write-flash", "verify-flash"], calls
    assert "--chip esp32 --port /dev/ttyUSB9" in calls[0]
    assert "write-flash -z 0x1000 " + str(img) in calls[1]
    assert "verify-flash 0x1000 " + str(img) in calls[2]


def test_s3_and_c3_images_go_to_offset_zero(fake, tmp_path):
    for chip, cid in (("esp32s3", 9), ("esp32c3", 5)):
        img = image(tmp_path / (chip + ".bin"), cid)
        p, calls = fake("--chip", chip, "--image", str(img))
        assert p.returncode == 0, p.stderr
        assert "write-flash -z 0x0 " + str(img) in calls[-2]


def test_missing_image_is_a_clear_message(fake, tmp_path):
    p, calls = fake("--chip", "esp32", "--image", str(tmp_path / "nope.bin"))
    assert p.returncode == 2 and "not found" in p.stderr and "micropython.org" in p.stderr
    assert calls == []
    assert "Traceback" not in p.stderr


def test_image_for_another_chip_is_refused_before_esptool(fake, tmp_path):
    img = image(tmp_path / "ESP32_GENERIC_S3.bin", 9)
    p, calls = fake("--chip", "esp32", "--image", str(img))
    assert p.returncode == 2 and "built for esp32s3, not esp32" in p.stderr
    assert calls == []
    junk = tmp_path / "firmware.uf2"
    junk.write_bytes(b"UF2\n" + bytes(100))
    p, calls = fake("--chip", "esp32", "--image", str(junk))
    assert p.returncode == 2 and "not an ESP firmware image" in p.stderr


def test_wrong_chip_on_the_port_is_explained(fake, tmp_path):
    img = image(tmp_path / "ESP32_GENERIC.bin", 0)
    p, calls = fake("--chip", "esp32", "--image", str(img), FAKE_CHIP="esp32c3")
    assert p.returncode == 2
    assert "connected chip is not a esp32" in p.stderr and "ESP32C3" in p.stderr
    assert len(calls) == 1                      # stopped at the first step


def test_verify_failure_fails(fake, tmp_path):
    img = image(tmp_path / "ESP32_GENERIC.bin", 0)
    p, _calls = fake("--chip", "esp32", "--image", str(img), FAKE_VERIFY_FAIL="1")
    assert p.returncode == 2 and "verify failed" in p.stderr


def test_dry_run_calls_nothing(fake, tmp_path):
    img = image(tmp_path / "ESP32_GENERIC.bin", 0)
    p, calls = fake("--chip", "esp32", "--image", str(img), "--dry-run")
    assert p.returncode == 0 and calls == []
    assert p.stdout.count("[dry-run]") == 3 and "erase-flash" in p.stdout


def _frozen_tree(tmp_path, idf_board, chip_id):
    """A MicroPython tree after `make BOARD=... FROZEN_MANIFEST=...` (docs/BUILD.md)."""
    out = tmp_path / "mpy" / "ports" / "esp32" / f"build-{idf_board}"
    out.mkdir(parents=True)
    return image(out / "firmware.bin", chip_id)


def test_frozen_build_of_a_board_is_flashed_for_its_chip(fake, tmp_path):
    img = _frozen_tree(tmp_path, "ESP32_GENERIC", 0)
    p, calls = fake("--board", "esp32_devkitc", "--mpy-src", str(tmp_path / "mpy"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--chip esp32 --port /dev/ttyUSB9" in calls[0]
    assert "write-flash -z 0x1000 " + str(img) in calls[1]
    assert "deploy --port /dev/ttyUSB9 --board esp32_devkitc --frozen" in p.stdout


def test_frozen_build_not_built_names_the_make_command(fake, tmp_path):
    (tmp_path / "mpy" / "ports" / "esp32").mkdir(parents=True)
    p, calls = fake("--board", "esp32s3_devkitc", "--mpy-src", str(tmp_path / "mpy"))
    assert p.returncode == 2 and calls == []
    assert "METER_BOARD=esp32s3_devkitc make BOARD_DIR=" in p.stderr
    assert "boards/esp32/idf/ESP32_GENERIC_S3 FROZEN_MANIFEST=" in p.stderr     # the OTA table (docs/OTA.md §2)
    assert "tools/manifest.py" in p.stderr and "Traceback" not in p.stderr


def test_frozen_build_for_the_wrong_chip_is_refused(fake, tmp_path):
    _frozen_tree(tmp_path, "ESP32_GENERIC_C3", 0)          # an esp32 image in the C3's build dir
    p, calls = fake("--board", "esp32c3_devkitm", "--mpy-src", str(tmp_path / "mpy"))
    assert p.returncode == 2 and "built for esp32, not esp32c3" in p.stderr
    assert calls == []


def test_deploy_frozen_writes_only_board_txt(tmp_path):
    # main.py is frozen too: the port runs a frozen main.py before any file
    p = subprocess.run(FLASH + ["deploy", "--port", "x", "--board", "esp32_devkitc", "--frozen",
                                "--build-dir", str(tmp_path / "b"), "--dry-run"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    files = sorted(str(f.relative_to(tmp_path / "b")) for f in (tmp_path / "b").rglob("*") if f.is_file())
    assert files == ["board.txt"], files
    assert "mip" not in p.stdout                              # umqtt is frozen in too
