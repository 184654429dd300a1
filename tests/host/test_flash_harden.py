"""tools/flash.py harden: the production eFuse plan (flash encryption, Secure
Boot v2, JTAG and ROM download mode off) against espefuse's own virtual
chip. The `espefuse` on PATH is a shim that swaps `--port` for espefuse's
`--virt --path-efuse-file` (a chip's eFuses in a file, burnt by the real
espefuse with its real rules); `esptool` is a fake that logs (no flash
here); espsecure is the real one. The summary afterwards is read back from
the virtual chip."""

import os
import subprocess
import sys

import pytest
from ptymeter import ROOT

pytestmark = pytest.mark.timeout(300)
FLASH = [sys.executable, str(ROOT / "tools" / "flash.py")]
VENV = ROOT / ".venv" / "bin"

SHIM = """#!%(py)s
import os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write("espefuse " + " ".join(args) + "\\n")
i = args.index("--port")
args[i:i + 2] = ["--virt", "--path-efuse-file", os.environ["FAKE_EFUSES"]]
sys.exit(subprocess.call([%(real)r] + args))
"""
FAKE_ESPTOOL = """#!%(py)s
import os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write("esptool " + " ".join(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def chip(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("espefuse", SHIM), ("esptool", FAKE_ESPTOOL)):
        exe = bin_ / name
        exe.write_text(text % {"py": sys.executable, "real": str(VENV / "espefuse")})
        exe.chmod(0o755)
    keys = tmp_path / "office-keys"
    keys.mkdir()
    sb = keys / "sbv2.pem"
    subprocess.run([str(VENV / "espsecure"), "generate-signing-key", "--version", "2", "--scheme",
                    "rsa3072", str(sb)], check=True, capture_output=True, timeout=60)
    images = []
    for name in ("bootloader", "partition-table", "micropython"):
        p = tmp_path / (name + ".bin")
        p.write_bytes(os.urandom(3072))          # flash images come in 16-byte units
        images.append(str(p))
    log = tmp_path / "calls.log"
    efuses = tmp_path / "efuses.bin"

    def env():
        return dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", FAKE_LOG=str(log),
                    FAKE_EFUSES=str(efuses))

    def new_chip(kind, *burn):
        """A blank virtual chip, with the given eFuses pre-set (its silicon)."""
        if efuses.exists():
            efuses.unlink()
        cmd = [str(VENV / "espefuse"), "--chip", kind, "--virt", "--path-efuse-file", str(efuses)]
        subprocess.run(cmd + (["--do-not-confirm", "burn-efuse", *burn] if burn else ["summary"]),
                       check=True, capture_output=True, timeout=60)

    def harden(kind, *extra):
        p = subprocess.run(FLASH + ["harden", "--port", "/dev/ttyUSB7", "--chip", kind,
                                    "--signing-key", str(sb), "--bootloader", images[0],
                                    "--partitions", images[1], "--app", images[2],
                                    "--work-dir", str(tmp_path / "work"), *extra],
                           capture_output=True, text=True, env=env(), timeout=240, check=False)
        calls = log.read_text().splitlines() if log.exists() else []
        return p, calls

    def summary(kind):
        out = subprocess.run([str(VENV / "espefuse"), "--chip", kind, "--virt", "--path-efuse-file",
                              str(efuses), "summary"], capture_output=True, text=True, timeout=60,
                             check=True)
        state, last = {}, None
        for line in out.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "=" and last:          # a key block's value line
                state[last] = " ".join(parts[1:])
            elif parts and "=" in parts:
                state[parts[0]] = " ".join(parts[parts.index("=") + 1:])
            if parts and parts[0] != "=":
                last = parts[0]
        return state
    return new_chip, harden, summary


def test_dry_run_prints_the_plan_and_burns_nothing(chip):
    new_chip, harden, summary = chip
    new_chip("esp32", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1")
    p, calls = harden("esp32", "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    assert calls == [], calls                        # no espefuse, no esptool ran
    out = p.stdout
    order = ["burn-key flash_encryption", "burn-key-digest", "ABS_DONE_1", "JTAG_DISABLE",
             "UART_DOWNLOAD_DIS 1 write-protect-efuse FLASH_CRYPT_CNT"]
    at = [out.index(s) for s in order]
    assert at == sorted(at), out
    assert out.index("write-flash") < out.index("UART_DOWNLOAD_DIS")
    assert summary("esp32")["ABS_DONE_1"].startswith("False")


def test_an_esp32_v3_is_hardened_in_order(chip):
    new_chip, harden, summary = chip
    new_chip("esp32", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1")
    p, calls = harden("esp32")
    assert p.returncode == 2 and "--yes" in p.stderr       # burns need the operator's yes
    p, calls = harden("esp32", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    s = summary("esp32")
    for fuse in ("ABS_DONE_1", "JTAG_DISABLE", "UART_DOWNLOAD_DIS", "DISABLE_DL_ENCRYPT",
                 "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE", "CONSOLE_DEBUG_DISABLE"):
        assert s[fuse].startswith("True"), (fuse, s[fuse])
    assert s["FLASH_CRYPT_CNT"].startswith("1 ") and "R/-" in s["FLASH_CRYPT_CNT"], s["FLASH_CRYPT_CNT"]
    assert s["BLOCK1"].startswith("??") and s["BLOCK1"].endswith("-/-"), s["BLOCK1"]  # key unreadable
    writes = [i for i, c in enumerate(calls) if c.startswith("esptool") and "write-flash" in c]
    last = [i for i, c in enumerate(calls) if "UART_DOWNLOAD_DIS" in c]
    assert writes and last and writes[0] < last[0], calls
    assert ".enc.bin" in calls[writes[0]] and "0x1000" in calls[writes[0]]


def test_a_hardened_or_old_chip_is_refused_before_any_burn(chip):
    new_chip, harden, _summary = chip
    new_chip("esp32")                                       # v1 silicon
    p, calls = harden("esp32", "--yes")
    assert p.returncode == 2 and "below v3.0" in p.stderr, p.stderr
    assert not [c for c in calls if "burn" in c]
    new_chip("esp32", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1")
    assert harden("esp32", "--yes")[0].returncode == 0
    p, calls = harden("esp32", "--yes")
    assert p.returncode == 2 and "already hardened" in p.stderr, p.stderr


def test_a_c3_gets_its_own_plan(chip):
    new_chip, harden, summary = chip
    new_chip("esp32c3")
    p, _calls = harden("esp32c3", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    s = summary("esp32c3")
    for fuse in ("SECURE_BOOT_EN", "DIS_PAD_JTAG", "DIS_USB_JTAG", "DIS_DOWNLOAD_MODE",
                 "DIS_DOWNLOAD_MANUAL_ENCRYPT"):
        assert s[fuse].startswith("True"), (fuse, s[fuse])
    assert s["SPI_BOOT_CRYPT_CNT"].split()[0] in ("Enable", "7"), s["SPI_BOOT_CRYPT_CNT"]
    assert "XTS_AES_128_KEY" in s["KEY_PURPOSE_0"], s["KEY_PURPOSE_0"]
