"""The meter boards' partition table (boards/esp32/idf/partitions-meter.csv,
docs/OTA.md §2) against what the firmware and the unix board's flash model
assume of it: the slots the simulator's Partition objects report (label,
subtype, address, size), otadata's two sectors, the filesystem partition
the frozen _boot.py mounts, no factory app (blank otadata boots ota_0, as the
model's bootloader does), and the ESP-IDF's layout rules. The build
fragments that select it (and rollback) are checked as the ESP-IDF and
MicroPython's ports/esp32 read them."""

import re
import subprocess
import sys

from conftest import MICROPYTHON, ROOT, mp_env

IDF = ROOT / "boards" / "esp32" / "idf"
CSV = IDF / "partitions-meter.csv"
FLASH = 4 * 1024 * 1024                 # CONFIG_ESPTOOLPY_FLASHSIZE_4MB
TABLE_END = 0x9000                      # the table itself: 0x8000, one sector
SECTOR = 0x1000
APP_ALIGN = 0x10000                     # ESP-IDF: app partitions on 64 KiB boundaries
SUBTYPES = {"ota_0": 0x10, "ota_1": 0x11, "factory": 0x00, "ota": 0x00, "nvs": 0x01, "phy": 0x01,
            "fat": 0x81}

# The unix board as make sim builds it (default slot size), asked for what
# the firmware asks esp32.Partition: the running slot and the next one.
MODEL = """
import sys
from boards.unix import build
from boards.unix import ota_model
hw = build(sys.argv[1] + "/s", ota_dir=sys.argv[1] + "/ota")
P = hw.partitions
run = P(P.RUNNING)
for p in (run, run.get_next_update()):
    print("PART", *p.info()[:5])
print("ENTRIES", len(P.entries()), ota_model.BLOCK)
with open(sys.argv[1] + "/ota/otadata.bin", "rb") as f:
    print("OTADATA", len(f.read()))
"""


def table(text=None):
    rows = []
    for line in (text or CSV.read_text()).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, kind, sub, off, size = [c.strip() for c in line.split(",")][:5]
        rows.append((name, kind, sub, int(off, 0), int(size, 0)))
    return rows


def model(tmp_path):
    p = subprocess.run([MICROPYTHON, "-c", MODEL, str(tmp_path)], env=mp_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    parts = {}
    for line in p.stdout.splitlines():
        w = line.split()
        if w[0] == "PART":
            parts[w[5]] = (int(w[1]), int(w[2]), int(w[3]), int(w[4]))
        elif w[0] == "ENTRIES":
            entries, block = int(w[1]), int(w[2])
        elif w[0] == "OTADATA":
            otadata = int(w[1])
    return parts, entries, block, otadata


def test_the_table_follows_the_esp_idf_layout_rules():
    rows = table()
    at = TABLE_END
    for name, kind, sub, off, size in sorted(rows, key=lambda r: r[3]):
        assert off >= at, f"{name} overlaps the one before (or the table at 0x8000)"
        align = APP_ALIGN if kind == "app" else SECTOR
        assert off % align == 0 and size % SECTOR == 0, name
        assert sub in SUBTYPES, (name, sub)
        at = off + size
    assert at <= FLASH, f"the table ends at {at:#x}, beyond the 4 MB flash"
    assert len({r[0] for r in rows}) == len(rows)


def test_the_slots_are_the_ones_the_firmware_and_the_unix_model_use(tmp_path):
    rows = {r[0]: r for r in table()}
    apps = [r for r in rows.values() if r[1] == "app"]
    # two slots and no factory app: boards/esp32_common.ota_partitions() wants
    # two app partitions, and the model boots ota_0 from a blank otadata (the
    # IDF's bootloader does so only when there is no factory partition)
    assert sorted(r[0] for r in apps) == ["ota_0", "ota_1"]
    parts, entries, block, otadata = model(tmp_path)
    assert sorted(parts) == ["ota_0", "ota_1"]
    for label, (kind, sub, addr, size) in parts.items():
        _, _, csv_sub, off, csv_size = rows[label]
        assert kind == 0 and sub == SUBTYPES[csv_sub], label          # esp32.Partition.TYPE_APP
        assert (addr, size) == (off, csv_size), (label, hex(addr), hex(size), hex(off), hex(csv_size))
    # otadata: the model's two esp_ota_select_entry_t, each in its own sector
    _, kind, sub, _, size = rows["otadata"]
    assert (kind, sub) == ("data", "ota") and size == entries * block
    assert otadata == entries * 32
    # the frozen image (about 1.6 MB, docs/BUILD.md §2) with room to grow
    assert min(r[4] for r in apps) >= 1_600_000 * 105 // 100


def test_the_filesystem_partition_is_the_one_boot_mounts():
    rows = {r[0]: r for r in table()}
    # boards/esp32/_boot.py mounts the port's flashbdev.bdev: the data
    # partition labelled "vfs" (flashbdev.py finds it by that label)
    assert "flashbdev" in (ROOT / "boards" / "esp32" / "_boot.py").read_text()
    assert rows["vfs"][1:3] == ("data", "fat") and rows["vfs"][4] >= 512 * 1024


def test_the_build_selects_the_table_and_rollback_for_every_meter_board():
    sys.path.insert(0, str(ROOT / "tools"))
    import flash  # tools/flash.py: where it takes each board's image

    conf = dict(line.split("=", 1) for line in (IDF / "sdkconfig.meter").read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    assert conf["CONFIG_PARTITION_TABLE_CUSTOM"] == "y" and conf["CONFIG_ESPTOOLPY_FLASHSIZE_4MB"] == "y"
    cmake = (IDF / "meter.cmake").read_text()
    assert "sdkconfig.meter" in cmake
    csv_named = re.search(r'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\\"\$\{CMAKE_CURRENT_LIST_DIR\}/([^"\\]+)', cmake)
    assert csv_named and (IDF / csv_named.group(1)) == CSV
    for meter_board, idf_board in flash.IDF_BOARDS.items():
        d = IDF / idf_board                       # make BOARD_DIR=$REPO/boards/esp32/idf/<it>
        code = [ln for ln in (d / "mpconfigboard.cmake").read_text().splitlines() if not ln.startswith("#")]
        # the stock board's settings first, the meter's appended after them
        assert code == [f"include(boards/{idf_board}/mpconfigboard.cmake)",
                        "include(${MICROPY_BOARD_DIR}/../meter.cmake)"], meter_board
        assert "MICROPY_HW_MCU_NAME" in (d / "mpconfigboard.h").read_text()


def test_the_doc_lists_the_table_of_the_repository():
    doc = (ROOT / "docs" / "OTA.md").read_text()
    sec = doc[doc.index("`boards/esp32/idf/partitions-meter.csv`:"):]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \| (0x[0-9a-f]+) \| (0x[0-9a-f]+)", sec, re.MULTILINE)[:6]
    assert [(n, k, s, int(o, 16), int(z, 16)) for n, k, s, o, z in rows] == table()
    assert "boards/esp32/idf/partitions-meter.csv" in doc
    assert "boards/esp32/idf" in (ROOT / "docs" / "BUILD.md").read_text()
