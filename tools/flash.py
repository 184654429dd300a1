"""Flash, deploy and provision a meter board.

  flash.py firmware  --port P --chip esp32 --image ESP32_GENERIC.bin [--dry-run]
      erase, write and verify a MicroPython image with esptool
  flash.py firmware  --port P --board esp32_devkitc --mpy-src MICROPYTHON_TREE
      the same with the board's frozen build of tools/manifest.py (docs/BUILD.md),
      then `deploy --frozen` writes only board.txt (and a battery board's ULP program)
  flash.py deploy    --port P --board esp32_devkitc [--opt k=v ...] [--source] [--dry-run]
      compile the app with mpy-cross for the board's CPU, copy it with
      mpremote, install umqtt.simple, write board.txt, verify every file by hash;
      --board esp32_battery also assembles and copies its ULP program
      (/ulp/counter.ulp, or the binary given with --ulp FILE)
  flash.py provision --port P --meter-id M000123 --region 3 --secrets FILE [...]
      write identity, keys, Wi-Fi and broker settings once; secrets are read
      from a file outside the repository, from environment variables or from
      a no-echo prompt, and are never printed
  flash.py svc-token --office-key KEY.pem --challenge "svc-challenge ..." [--minutes 30]
      the office's answer to a production meter's service challenge
  flash.py harden    --port P --chip esp32 [--dry-run]
      eFuse and secure-boot steps of a production meter (docs/SECURITY.md)

The same commands work against a real board (a serial port) and against a
unix-port MicroPython on a pseudo-terminal (see tests/host/ptymeter.py).
"""

from __future__ import annotations

import argparse
import ast
import getpass
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

# chip -> (esptool --chip, flash offset of the MicroPython image, image chip id)
CHIPS = {
    "esp32": ("esp32", 0x1000, 0),
    "esp32s2": ("esp32s2", 0x1000, 2),
    "esp32c3": ("esp32c3", 0x0, 5),
    "esp32s3": ("esp32s3", 0x0, 9),
    "esp32c6": ("esp32c6", 0x0, 13),
}
CHIP_BY_ID = {v[2]: k for k, v in CHIPS.items()}

# board -> MicroPython's esp32 port BOARD of its frozen build (docs/BUILD.md)
IDF_BOARDS = {
    "esp32_devkitc": "ESP32_GENERIC",
    "esp32s3_devkitc": "ESP32_GENERIC_S3",
    "esp32c3_devkitm": "ESP32_GENERIC_C3",
}

# board -> (chip, mpy-cross -march, default state dir)
BOARDS = {
    "esp32_devkitc": ("esp32", "xtensawin", "/data"),
    "esp32_battery": ("esp32", "xtensawin", "/data"),
    "esp32s3_devkitc": ("esp32s3", "xtensawin", "/data"),
    "esp32c3_devkitm": ("esp32c3", "rv32imc", "/data"),
    "unix": (None, None, "data"),   # the simulator: portable bytecode
}

# boards whose app may be frozen into the firmware (deploy --frozen). The
# battery board's image is built by hand as esp32_devkitc's with
# METER_BOARD=esp32_battery (docs/BUILD.md): it shares build-ESP32_GENERIC,
# so `firmware --board` could not tell the two images apart
FROZEN_BOARDS = set(IDF_BOARDS) | {"esp32_battery"}

# the boards/ modules every board gets (tools/manifest.py freezes the same)
BOARDS_COMMON = ("__init__", "ticker", "tls", "validate")

# files that stay source on the device: MicroPython runs boot.py and main.py
# only as .py, from the root of the filesystem
SOURCE_ONLY = {"main.py", "boot.py"}


class Fail(Exception):
    """A clear, expected failure: printed without a traceback."""


def tool(name: str) -> str:
    """A tool from PATH first (so tests can put a fake there), then the venv."""
    found = shutil.which(name)
    if found:
        return found
    cand = VENV_BIN / name
    if cand.exists():
        return str(cand)
    raise Fail(f"{name} not found (install it: pip install {name})")


def run(cmd: list[str], dry: bool, quiet: bool = False, **kw) -> subprocess.CompletedProcess | None:
    shown = " ".join(_quote(c) for c in cmd)
    if dry:
        print("[dry-run] " + shown)
        return None
    if not quiet:
        print("$ " + shown)
    return subprocess.run(cmd, check=False, **kw)


def _quote(s: str) -> str:
    return s if s and all(c.isalnum() or c in "-_./:=,+@" for c in s) else "'{}'".format(s.replace("'", "'\\''"))


# --------------------------------------------------------------- firmware
def image_chip(path: Path) -> str | None:
    """The chip an ESP image is built for, from its extended header
    (byte 0 magic 0xE9, chip id little-endian at bytes 12-13)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 16 or head[0] != 0xE9:
        return None
    return CHIP_BY_ID.get(head[12] | head[13] << 8, f"chip-id-{head[12] | head[13] << 8}")


def frozen_image(board: str, mpy_src: str) -> Path:
    """The image tools/manifest.py's frozen build leaves in a MicroPython tree."""
    if board not in IDF_BOARDS:
        raise Fail("no frozen build for board {!r} (one of {})".format(board, ", ".join(IDF_BOARDS)))
    img = Path(mpy_src) / "ports" / "esp32" / f"build-{IDF_BOARDS[board]}" / "firmware.bin"
    if not img.is_file():
        raise Fail(f"{img} not found: build it first (docs/BUILD.md):\n"
                   f"  cd {Path(mpy_src) / 'ports' / 'esp32'} && METER_BOARD={board} make "
                   f"BOARD_DIR={ROOT / 'boards' / 'esp32' / 'idf' / IDF_BOARDS[board]} "
                   f"FROZEN_MANIFEST={ROOT / 'tools' / 'manifest.py'}")
    return img


def cmd_firmware(a: argparse.Namespace) -> int:
    if a.board:
        # the frozen build for this board: its image, and the chip it is for
        if a.image or not a.mpy_src:
            raise Fail("--board takes --mpy-src (the tree of the frozen build), not --image")
        a.image = str(frozen_image(a.board, a.mpy_src))
        a.chip = a.chip or BOARDS[a.board][0]
    elif not (a.chip and a.image):
        raise Fail("give --chip and --image, or --board and --mpy-src for the frozen build")
    if a.chip not in CHIPS:
        raise Fail("unknown chip {!r} (one of {})".format(a.chip, ", ".join(CHIPS)))
    img = Path(a.image)
    if not img.is_file():
        raise Fail(f"image {img} not found. Download the MicroPython .bin for {a.chip} from "
                   "micropython.org/download, or build one with the manifest (tools/manifest.py).")
    got = image_chip(img)
    if got is None:
        raise Fail(f"{img} is not an ESP firmware image (no 0xE9 header): a .uf2/.hex or a "
                   "corrupt download?")
    if got != a.chip:
        raise Fail(f"{img} is built for {got}, not {a.chip}: pick the image for this board")
    esptool_chip, offset, _ = CHIPS[a.chip]
    esptool = tool("esptool")
    base = [esptool, "--chip", esptool_chip, "--port", a.port, "--baud", str(a.baud)]
    steps = [
        ("erase", base + ["erase-flash"]),
        ("write", base + ["write-flash", "-z", hex(offset), str(img)]),
        ("verify", base + ["verify-flash", hex(offset), str(img)]),
    ]
    for name, c in steps:
        p = run(c, a.dry_run, capture_output=True, text=True)
        if p is None:
            continue
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            msg = (p.stdout + p.stderr).strip().splitlines()
            last = msg[-1] if msg else f"exit {p.returncode}"
            if "not " in last and "chip" in last.lower():
                raise Fail(f"{name} failed: the connected chip is not a {a.chip} ({last})")
            raise Fail(f"{name} failed: {last}")
    print("firmware: {} on {} {}".format(img.name, a.port, "(dry run)" if a.dry_run else "written and verified"))
    if a.board:
        print(f"firmware: the app is frozen in; next: flash.py deploy --port {a.port} --board {a.board} "
              "--frozen (board.txt), then provision")
    return 0


# --------------------------------------------------------------- deploy
def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def app_files(board: str, frozen: bool = False) -> list[tuple[Path, str]]:
    """(local source, device path) of everything the app needs on a board;
    with the app frozen into the firmware, nothing (boot.py and main.py are
    frozen too and run before any file; board.txt and a battery board's
    ULP program are added by deploy)."""
    out = []
    fw = ROOT / "firmware"
    if frozen:
        return []
    for p in sorted(fw.rglob("*.py")):
        rel = p.relative_to(fw).as_posix()
        out.append((p, rel if rel in SOURCE_ONLY else "lib/" + rel))
    for name in BOARDS_COMMON:
        out.append((ROOT / "boards" / (name + ".py"), f"lib/boards/{name}.py"))
    if board == "unix":
        for p in sorted((ROOT / "boards" / "unix").glob("*.py")):
            out.append((p, "lib/boards/unix/" + p.name))
    else:
        for name in board_modules(board):
            out.append((ROOT / "boards" / (name + ".py"), f"lib/boards/{name}.py"))
    return out


def _board_tree(name: str) -> ast.Module:
    return ast.parse((ROOT / "boards" / (name + ".py")).read_text(), name + ".py")


def board_modules(board: str) -> list[str]:
    """The board module and every boards/ module it imports, at any depth
    (esp32_common; ulp for the battery board), as tools/manifest.py freezes
    them, less BOARDS_COMMON, which every board gets."""
    seen: set[str] = set()
    todo = [board]
    while todo:
        name = todo.pop()
        if name in seen or not (ROOT / "boards" / (name + ".py")).is_file():
            continue            # boards.Hardware and the like: names, not modules
        seen.add(name)
        for node in ast.walk(_board_tree(name)):
            if isinstance(node, ast.ImportFrom) and node.module == "boards":
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("boards."):
                todo.append(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[1] for a in node.names if a.name.startswith("boards.")]
    return sorted(seen - set(BOARDS_COMMON))


def ulp_device_path(board: str) -> str | None:
    """Where the board's module reads its ULP program (ULP_BINARY), as a
    path from the device's root like every deployed file; None: no ULP."""
    if board == "unix":
        return None
    for node in _board_tree(board).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ULP_BINARY" for t in node.targets):
            return str(ast.literal_eval(node.value)).lstrip("/")
    return None


def ulp_program(board: str, given: str | None) -> tuple[str, bytes] | None:
    """The board's ULP program: the binary given with --ulp, checked, or
    firmware/ulp/counter.S assembled now; (device path, binary), or None
    for a board without one. Runs before anything reaches the device, so
    a missing or damaged program leaves the board as it was."""
    dev = ulp_device_path(board)
    if dev is None:
        if given:
            raise Fail(f"--ulp: board {board!r} has no ULP program")
        return None
    sys.path.insert(0, str(ROOT / "tools"))
    import ulp_build
    how = f"python tools/ulp_build.py {given or 'build/ulp/counter.ulp'}"
    if not given:
        with tempfile.TemporaryDirectory(prefix="ulp-") as d:
            try:
                return dev, ulp_build.build(Path(d) / "counter.ulp").read_bytes()
            except ulp_build.UlpBuildError as e:
                raise Fail(f"the ULP program for {board} cannot be built: {e}") from None
    src = Path(given)
    if not src.is_file():
        raise Fail(f"--ulp {src}: no such file; build the ULP program with `{how}`")
    body = src.read_bytes()
    problem = ulp_build.check(body)
    if problem:
        raise Fail(f"--ulp {src} is not a ULP program the board can load: {problem}; "
                   f"build it again with `{how}`")
    return dev, body


def build_app(board: str, out: Path, source: bool, umqtt: str, frozen: bool = False) -> list[str]:
    """Compile into out/ (the device tree); returns the device paths."""
    march = BOARDS[board][1]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mpy_cross = tool("mpy-cross")
    paths = []
    files = app_files(board, frozen)
    if umqtt == "local":
        local = ROOT / "build" / "lib" / "umqtt" / "simple.py"
        if not local.exists():
            raise Fail(f"no local umqtt.simple at {local} (python tools/fetch_umqtt.py build/lib), "
                       "or use --umqtt mip")
        files.append((local, "lib/umqtt/simple.py"))
    for src, dev in files:
        dst = out / dev
        dst.parent.mkdir(parents=True, exist_ok=True)
        if source or dev in SOURCE_ONLY:
            shutil.copyfile(src, dst)
        else:
            dst = dst.with_suffix(".mpy")
            dev = dev[:-3] + ".mpy"
            cmd = [mpy_cross, "-o", str(dst), "-s", Path(dev).name[:-4] + ".py"]
            if march:
                cmd.append("-march=" + march)
            p = subprocess.run(cmd + [str(src)], capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise Fail(f"mpy-cross failed on {src}:\n{p.stderr}")
        paths.append(dev)
    return paths


def board_txt(board: str, opts: list[str]) -> str:
    lines = [board]
    keys = set()
    for o in opts:
        if "=" not in o:
            raise Fail(f"--opt {o!r}: expected key=value")
        keys.add(o.split("=", 1)[0])
        lines.append(o)
    if "state_dir" not in keys:
        lines.append("state_dir=" + BOARDS[board][2])
    return "\n".join(lines) + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_HASH_CODE = """
import hashlib, binascii
def _h(p):
    d = hashlib.sha256()
    try:
        f = open(p, 'rb')
    except OSError:
        return 'missing'
    while True:
        b = f.read(512)
        if not b:
            break
        d.update(b)
    f.close()
    return binascii.hexlify(d.digest()).decode()
for _p in %r:
    print('H', _p, _h(_p))
"""


class Device:
    """mpremote against a port: `connect PORT resume` (no soft reset: a
    unix-port MicroPython would exit, and a running meter would stop)."""

    def __init__(self, port: str, dry: bool):
        self.port = port
        self.dry = dry
        self.mpremote = tool("mpremote")

    def __call__(self, *args: str, quiet: bool = False, timeout: int = 120) -> str:
        cmd = [self.mpremote, "connect", self.port, "resume", *args]
        p = run(cmd, self.dry, quiet=quiet, capture_output=True, text=True, timeout=timeout)
        if p is None:
            return ""
        if p.returncode != 0:
            raise Fail(f"mpremote {args[0]} failed: {(p.stdout + p.stderr).strip()[-400:]}")
        return p.stdout.replace("\r\n", "\n")

    def run_file(self, code: str, quiet: bool = True) -> str:
        """Run code on the device from a private temp file (never in argv)."""
        d = tempfile.mkdtemp(prefix="flash-")
        try:
            path = Path(d) / "job.py"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(code)
            if self.dry:
                print(f"[dry-run] mpremote connect {self.port} resume run <generated script>")
                return ""
            return self("run", str(path), quiet=quiet)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def device_hashes(dev: Device, paths: list[str]) -> dict[str, str]:
    out = dev("exec", _HASH_CODE % (paths,), quiet=True)
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "H":
            got[parts[1]] = parts[2]
    return got


def cmd_deploy(a: argparse.Namespace) -> int:
    if a.board not in BOARDS:
        raise Fail("unknown board {!r} (one of {})".format(a.board, ", ".join(BOARDS)))
    t0 = time.monotonic()
    out = Path(a.build_dir) if a.build_dir else ROOT / "build" / "deploy" / a.board
    umqtt = a.umqtt
    if a.frozen:
        if a.board not in FROZEN_BOARDS:
            raise Fail(f"--frozen: no frozen build for board {a.board!r}")
        umqtt = "skip"      # frozen in with the app
    elif umqtt == "auto":
        umqtt = "local" if (ROOT / "build" / "lib" / "umqtt" / "simple.py").exists() else "mip"
    ulp = ulp_program(a.board, a.ulp)       # first: a bad program fails before the compile
    paths = build_app(a.board, out, a.source, umqtt, a.frozen)
    if ulp:
        (out / ulp[0]).parent.mkdir(parents=True, exist_ok=True)
        (out / ulp[0]).write_bytes(ulp[1])
        paths.append(ulp[0])
    # board.txt last, after every file its board needs: the copy goes in
    # this order
    (out / "board.txt").write_text(board_txt(a.board, a.opt))
    paths.append("board.txt")
    how = "source" if a.source else ("mpy-cross -march=" + BOARDS[a.board][1]
                                               if BOARDS[a.board][1] else "mpy-cross, bytecode")
    via = ", umqtt.simple from " + umqtt if umqtt != "skip" else ""
    via += f", ULP program {ulp[0]}" if ulp else ""
    print(f"deploy: {_files(len(paths))} for {a.board} ({how}){via}")
    dev = Device(a.port, a.dry_run)
    if a.verify_only:
        return _verify(dev, out, paths, t0)
    # one mpremote session for the whole copy: each connect costs a round trip
    dirs = sorted({str(Path(p).parent) for p in paths if "/" in p}, key=len)
    mk = f"import os\nfor d in {dirs!r}:\n    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
    dev("exec", mk, quiet=True)
    cp: list[str] = []
    for p in paths:
        cp += ["fs", "cp", str(out / p), ":" + p, "+"]
    dev(*cp[:-1], quiet=True, timeout=600)
    if umqtt == "mip":
        dev("mip", "install", "umqtt.simple")
    if a.dry_run:
        print("deploy: dry run, nothing copied")
        return 0
    return _verify(dev, out, paths, t0)


def _verify(dev: Device, out: Path, paths: list[str], t0: float) -> int:
    got = device_hashes(dev, paths)
    bad = [p for p in paths if got.get(p) != sha256(out / p)]
    if bad:
        raise Fail(f"verify: {len(bad)} file(s) differ on the device: {', '.join(bad[:8])}")
    print(f"deploy: {_files(len(paths))} verified by SHA-256 in {time.monotonic() - t0:.1f} s. "
          "Provision if new, then reset the board.")
    return 0


# --------------------------------------------------------------- provision
_PROVISION_CODE = """
import json, os
sd = %(state_dir)r
if sd is None:
    sd = '/data'
    try:
        for ln in open('board.txt').read().split('\\n'):
            if ln.startswith('state_dir='):
                sd = ln[10:].strip()
    except OSError:
        pass
p = ''
for part in sd.split('/'):
    p = p + part + '/' if (p or part) else '/'
    if part:
        try:
            os.mkdir(p)
        except OSError:
            pass
try:
    os.stat(sd + '/secrets.json')
    have = True
except OSError:
    have = False
if have and not %(force)r:
    print('P ALREADY')
else:
    try:
        cfg = json.load(open(sd + '/config.json'))
    except (OSError, ValueError):
        cfg = {}
    cfg.update(%(config)r)
    f = open(sd + '/config.json.new', 'w'); f.write(json.dumps(cfg)); f.close()
    os.rename(sd + '/config.json.new', sd + '/config.json')
    f = open(sd + '/secrets.json.new', 'w'); f.write(%(secrets)r); f.close()
    os.rename(sd + '/secrets.json.new', sd + '/secrets.json')
    # the first state copy: from now on "secrets, no state" is a state loss
    import time
    from storage.state import mark_provisioned
    mark_provisioned(sd, time.time())
    import hashlib, binascii
    print('P OK', sd, binascii.hexlify(hashlib.sha256(open(sd + '/secrets.json', 'rb').read()).digest()).decode())
"""


def _hex_of(v, digits: int) -> bool:
    return isinstance(v, str) and len(v) == digits and all(c in "0123456789abcdefABCDEF" for c in v)


# what a meter's provisioning file holds (docs/SERVICE.md §3; headend.py
# provision, cardtool.py meter-secret): the checks a key file gets before
# anything is written, so a wrong or truncated file is refused at the bench
MISSING = {"mk": "the meter will refuse every MQTT command",
           "pw": "the meter cannot log in to the broker",
           "card": "the meter will have no card reader (cardtool.py meter-secret)",
           "office": "the meter will refuse every office-signed tariff, card and fleet command"}


def key_problems(sec: dict, meter_id: str) -> tuple[list, list]:
    """(errors, warnings) of a provisioning file for meter_id."""
    bad = []
    for k in ("id", "user"):
        if k in sec and sec[k] != meter_id:
            bad.append(f"{k} is {sec[k]!r}, not --meter-id {meter_id!r}: another meter's keys?")
    if "mk" in sec and not _hex_of(sec["mk"], 64):
        bad.append("mk must be 64 hex digits (the 32-byte command key)")
    if "pw" in sec and not _hex_of(sec["pw"], 32):
        bad.append("pw must be 32 hex digits (the broker password)")
    if "card" in sec:
        card = sec["card"]
        for e in card if isinstance(card, list) and card else [card]:
            if not (isinstance(e, dict) and isinstance(e.get("rev"), int) and _hex_of(e.get("rec"), 64)
                    and isinstance(e.get("min_rev", 0), int)):
                bad.append('card must be {"rev": INT, "rec": 64 hex digits[, "min_rev": INT]} '
                           "or a list of them (docs/CARD.md §3.2)")
                break
    if "office" in sec and not (isinstance(sec["office"], dict) and sec["office"] and all(
            k.isdigit() and _hex_of(v, 128) for k, v in sec["office"].items())):
        bad.append('office must be {"<rev>": 128 hex digits} (docs/PROTOCOL.md §4.7)')
    warn = [f"no {k} in the secrets: {why}" for k, why in MISSING.items() if k not in sec]
    return bad, warn


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT)
        return True
    except ValueError:
        return False


def _secret(env: str | None, prompt: str, interactive: bool) -> str | None:
    if env:
        v = os.environ.get(env)
        if v is None:
            raise Fail(f"environment variable {env} is not set")
        return v
    if interactive and sys.stdin.isatty():
        return getpass.getpass(prompt) or None
    return None


def cmd_provision(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "firmware"))
    config = _load_config_module()
    secrets: dict = {}
    if a.secrets:
        sp = Path(a.secrets)
        if _inside_repo(sp):
            raise Fail(f"refusing {sp}: key files must live outside the repository")
        if not sp.is_file():
            raise Fail(f"secrets file {sp} not found")
        mode = sp.stat().st_mode & 0o077
        if mode:
            print(f"warning: {sp} is readable by group/others (chmod 600 it)")
        try:
            secrets = json.loads(sp.read_text())
        except ValueError as e:
            raise Fail(f"secrets file {sp} is not JSON: {e}") from None
        if not isinstance(secrets, dict):
            raise Fail("secrets file must hold a JSON object")
        bad, warn = key_problems(secrets, a.meter_id)
        if bad:
            raise Fail(f"secrets file {sp}: " + "; ".join(bad))
        for w in warn:
            print(f"warning: {w}")
    cfg = {"meter_id": a.meter_id, "region": a.region}
    if a.broker_host:
        cfg["mqtt"] = {"host": a.broker_host, "port": a.broker_port, "tls": a.tls, "keepalive": 60}
    for k, v in cfg.items():
        err = config.validate(k, v)
        if err:
            raise Fail(f"{k}: {err}")
    if a.wifi_ssid:
        pw = _secret(a.wifi_password_env, f"Wi-Fi password for {a.wifi_ssid}: ", True)
        secrets["wifi"] = {"ssid": a.wifi_ssid, "pw": pw or ""}
    if a.production:
        secrets["production"] = True
    pin = _secret(a.service_pin_env, "Service PIN (blank: none): ", not a.no_pin)
    if pin:
        if not (pin.isdigit() and 8 <= len(pin) <= 12):
            raise Fail("the service PIN must be 8-12 digits")
        secrets["svc_salt"], secrets["svc_pin"] = pin_record(pin)
    body = json.dumps(secrets, sort_keys=True)
    code = _PROVISION_CODE % {"state_dir": a.state_dir, "force": bool(a.force),
                              "config": cfg, "secrets": body}
    dev = Device(a.port, a.dry_run)
    out = dev.run_file(code)
    if a.dry_run:
        print("provision: dry run; would write config {} and secrets [{}] (values not shown)".format(json.dumps(cfg), ", ".join(sorted(secrets))))
        return 0
    if "P ALREADY" in out:
        raise Fail("meter already provisioned (secrets.json exists): keys are written once. "
                   "Rotate keys from the head-end, or erase the board and start again.")
    line = next((ln for ln in out.splitlines() if ln.startswith("P OK")), None)
    if line is None:
        raise Fail(f"provision: no confirmation from the device:\n{out[-400:]}")
    _, _, sd, digest = line.split()
    if digest != hashlib.sha256(body.encode()).hexdigest():
        raise Fail("provision: secrets.json on the device does not match what was sent")
    names = ", ".join(sorted(secrets))
    print(f"provision: {a.meter_id} region {a.region} in {sd}: config written; secrets [{names}] "
          "written and verified (values not shown). Reset the board to use them.")
    return 0


def pin_record(pin: str, salt: bytes | None = None) -> tuple[str, str]:
    """(svc_salt, svc_pin) as firmware/pinkdf.py checks them: PBKDF2-HMAC-
    SHA256 with a random per-meter salt and the firmware's round count."""
    sys.path.insert(0, str(ROOT / "firmware"))
    import pinkdf
    salt = salt if salt is not None else os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, pinkdf.ROUNDS)
    return salt.hex(), f"{pinkdf.SCHEME}${pinkdf.ROUNDS}${dk.hex()}"


# --------------------------------------------------------------- harden
# The eFuse plan of a production meter (docs/SECURITY.md, "Provisioning a
# production meter"), per chip family: the flash-encryption key, the
# digest of the office's Secure Boot v2 signing key, then the eFuses that
# turn both on and close JTAG and the ROM's download paths. Every step is
# one-way. ROM download mode goes last: after it, esptool and espefuse can
# never talk to the chip again, so the encrypted, signed images are written
# before it, and the write protection of the encryption counter is burnt in
# the same espefuse session (on the ESP32 that protection also covers
# UART_DOWNLOAD_DIS, so it cannot come first).
HARDEN = {
    "esp32": {
        "xts": False,
        "keys": [["burn-key", "flash_encryption", "{fe}"], ["burn-key-digest", "{sb}"]],
        "fuses": ["FLASH_CRYPT_CONFIG", "0xF", "FLASH_CRYPT_CNT", "1", "ABS_DONE_1", "1",
                  "DISABLE_DL_ENCRYPT", "1", "DISABLE_DL_DECRYPT", "1", "DISABLE_DL_CACHE", "1",
                  "JTAG_DISABLE", "1", "CONSOLE_DEBUG_DISABLE", "1"],
        "lock": "FLASH_CRYPT_CNT",
        "last": ["UART_DOWNLOAD_DIS", "1"],
        "done": ("ABS_DONE_1", "UART_DOWNLOAD_DIS"),
    },
    "esp32c3": {
        "xts": True,
        "keys": [["burn-key", "BLOCK_KEY0", "{fe}", "XTS_AES_128_KEY"],
                 ["burn-key-digest", "BLOCK_KEY1", "{sb}", "SECURE_BOOT_DIGEST0"]],
        "fuses": ["SPI_BOOT_CRYPT_CNT", "7", "SECURE_BOOT_EN", "1", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1",
                  "DIS_DOWNLOAD_ICACHE", "1", "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1",
                  "SOFT_DIS_JTAG", "7", "DIS_DIRECT_BOOT", "1"],
        "lock": "SPI_BOOT_CRYPT_CNT",
        "last": ["DIS_DOWNLOAD_MODE", "1"],
        "done": ("SECURE_BOOT_EN", "DIS_DOWNLOAD_MODE"),
    },
}
HARDEN["esp32s3"] = dict(HARDEN["esp32c3"], fuses=HARDEN["esp32c3"]["fuses"] + ["DIS_DOWNLOAD_DCACHE", "1"])
# where the images go: (bootloader, partition table, app)
IMAGE_AT = {"esp32": (0x1000, 0x8000, 0x10000), "esp32c3": (0x0, 0x8000, 0x10000),
            "esp32s3": (0x0, 0x8000, 0x10000)}


def _efuse_state(out: str) -> dict[str, str]:
    """NAME -> value from `espefuse summary`."""
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and "=" in parts and parts[0].isupper():
            got[parts[0]] = parts[parts.index("=") + 1]
    return got


def cmd_harden(a: argparse.Namespace) -> int:
    if a.chip not in HARDEN:
        raise Fail("harden: no eFuse plan for {} (one of {})".format(a.chip, ", ".join(HARDEN)))
    plan = HARDEN[a.chip]
    for what, path in (("--signing-key", a.signing_key), ("--bootloader", a.bootloader),
                       ("--partitions", a.partitions), ("--app", a.app)):
        if not Path(path).is_file():
            raise Fail(f"{what} {path} not found")
    if _inside_repo(Path(a.signing_key)) or (a.fe_key and _inside_repo(Path(a.fe_key))):
        raise Fail("refusing keys inside the repository: keep them in the office's key store")
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="harden-"))
    work.mkdir(parents=True, exist_ok=True)
    fe = Path(a.fe_key) if a.fe_key else work / "flash_encryption_key.bin"
    espefuse, espsecure, esptool = tool("espefuse"), tool("espsecure"), tool("esptool")
    ef = [espefuse, "--chip", a.chip, "--port", a.port]
    steps: list[tuple[str, list[str]]] = []
    if not fe.exists():
        # one key per meter, made on the office's machine; kept only if the
        # office will ever need to write this meter's flash again
        steps.append(("new flash-encryption key for this meter",
                      [espsecure, "generate-flash-encryption-key", str(fe)]))
    written = []
    for name, path, at in zip(("bootloader", "partitions", "app"), (a.bootloader, a.partitions, a.app),
                              IMAGE_AT[a.chip]):
        src = Path(path)
        if name != "partitions":
            signed = work / (src.stem + ".signed.bin")
            steps.append((f"sign the {name} (Secure Boot v2)",
                          [espsecure, "sign-data", "--version", "2", "--keyfile", a.signing_key,
                           "--output", str(signed), str(src)]))
            src = signed
        enc = work / (Path(path).stem + ".enc.bin")
        steps.append((f"encrypt the {name} for 0x{at:x}",
                      [espsecure, "encrypt-flash-data", *(["--aes-xts"] if plan["xts"] else []),
                       "--keyfile", str(fe), "--address", hex(at), "--output", str(enc), str(src)]))
        written += [hex(at), str(enc)]
    steps.append(("write the encrypted, signed images",
                  [esptool, "--chip", a.chip, "--port", a.port, "write-flash", *written]))
    for k in plan["keys"]:
        what = "the flash-encryption key (read- and write-protected)" if k[0] == "burn-key" \
            else "the digest of the office's secure-boot key"
        steps.append(("burn " + what,
                      ef + ["--do-not-confirm"] + [x.format(fe=fe, sb=a.signing_key) for x in k]))
    steps.append(("turn on flash encryption and secure boot; JTAG and download-mode crypto off",
                  ef + ["--do-not-confirm", "burn-efuse"] + plan["fuses"]))
    steps.append(("ROM download mode off, and nobody can turn flash encryption off: the last step",
                  ef + ["--do-not-confirm", "burn-efuse"] + plan["last"]
                  + ["write-protect-efuse", plan["lock"]]))
    if not a.dry_run:
        p = run(ef + ["summary"], False, capture_output=True, text=True)
        if p is None or p.returncode != 0:
            raise Fail("espefuse summary failed: {}".format((p.stdout + p.stderr).strip()[-300:] if p else ""))
        state = _efuse_state(p.stdout)
        if any(state.get(f) not in (None, "False", "0") for f in plan["done"]):
            raise Fail("this chip is already hardened ({}): nothing burnt".format(
                ", ".join(f"{f}={state.get(f)}" for f in plan["done"])))
        if a.chip == "esp32" and int(state.get("WAFER_VERSION_MAJOR", "0")) < 3:
            raise Fail("ESP32 below v3.0: no Secure Boot v2 and no UART_DOWNLOAD_DIS; "
                       "use ESP32-D0WD-V3 (ECO3) modules for meters")
        if not a.yes:
            raise Fail("harden burns eFuses for good: run with --dry-run first, then add --yes")
    for i, (why, c) in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {why}")
        p = run(c, a.dry_run, capture_output=True, text=True)
        if p is not None and p.returncode != 0:
            raise Fail(f"step {i} ({why}) failed: {(p.stdout + p.stderr).strip()[-300:]}")
    print("harden: {} on {} {}".format(a.chip, a.port, "(dry run, nothing burnt)" if a.dry_run
                                      else "hardened: flash encrypted, secure boot on, JTAG and "
                                           "ROM download mode off"))
    return 0


# --------------------------------------------------------------- svc-token
def svc_answer(office_key, challenge: str, minutes: int) -> str:
    """The line a technician types at a closed production meter: the office
    signs the meter's challenge (firmware/techaccess.py), purpose b"svc"."""
    parts = challenge.split()
    if len(parts) != 4 or parts[0] != "svc-challenge" or not parts[2].isdigit() \
            or len(parts[3]) != 32 or any(c not in "0123456789abcdef" for c in parts[3]):
        raise Fail("not a challenge: paste the meter's whole 'svc-challenge ID N NONCE' line")
    if not 1 <= minutes <= 120:
        raise Fail("--minutes must be 1..120")
    payload = f"{parts[1]} {parts[2]} {parts[3]} {minutes}".encode()
    return f"svc-open {minutes} {office_key.sign(b'svc', payload).hex()}"


def cmd_svc_token(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    from office import OfficeKey
    kp = Path(a.office_key)
    if not kp.is_file():
        raise Fail(f"office key {kp} not found")
    print(svc_answer(OfficeKey.load(kp), a.challenge, a.minutes))
    return 0


def _load_config_module():
    # firmware/config.py is plain Python apart from MicroPython's const()
    import builtins
    if not hasattr(builtins, "const"):
        builtins.const = lambda x: x  # type: ignore[attr-defined]
    import config
    return config


# --------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="flash.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("firmware", help="flash a MicroPython image with esptool")
    f.add_argument("--port", required=True)
    f.add_argument("--chip", choices=sorted(CHIPS))
    f.add_argument("--image")
    f.add_argument("--board", choices=sorted(IDF_BOARDS),
                   help="flash this board's frozen build (tools/manifest.py) from --mpy-src")
    f.add_argument("--mpy-src", help="the MicroPython tree the frozen image was built in")
    f.add_argument("--baud", type=int, default=460800)
    f.add_argument("--dry-run", action="store_true")
    f.set_defaults(fn=cmd_firmware)

    d = sub.add_parser("deploy", help="compile and copy the app, write board.txt, verify")
    d.add_argument("--port", required=True)
    d.add_argument("--board", required=True)
    d.add_argument("--opt", action="append", default=[], help="board.txt option key=value")
    d.add_argument("--source", action="store_true", help="copy .py instead of .mpy")
    d.add_argument("--frozen", action="store_true",
                   help="the firmware has the app (boot.py, main.py too) frozen in: write only board.txt")
    d.add_argument("--umqtt", choices=("auto", "mip", "local", "skip"), default="auto")
    d.add_argument("--ulp", help="battery board: this ULP binary (tools/ulp_build.py) instead of "
                                 "assembling firmware/ulp/counter.S")
    d.add_argument("--verify-only", action="store_true", help="only compare hashes with a build")
    d.add_argument("--build-dir", help="where to compile (default build/deploy/<board>)")
    d.add_argument("--dry-run", action="store_true")
    d.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("provision", help="write identity, keys, Wi-Fi and broker once")
    p.add_argument("--port", required=True)
    p.add_argument("--meter-id", required=True)
    p.add_argument("--region", type=int, required=True)
    p.add_argument("--secrets", help="JSON key file from the head-end (outside the repo)")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-password-env", help="read the Wi-Fi password from this variable")
    p.add_argument("--broker-host")
    p.add_argument("--broker-port", type=int, default=8883)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--service-pin-env", help="read the service PIN from this variable")
    p.add_argument("--no-pin", action="store_true", help="do not prompt for a service PIN")
    p.add_argument("--state-dir", help="default: state_dir in the device's board.txt, else /data")
    p.add_argument("--production", action="store_true",
                   help="a production meter: REPL closed, opened only by an office token")
    p.add_argument("--force", action="store_true", help="overwrite existing secrets (bench use)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_provision)

    h = sub.add_parser("harden", help="flash encryption, secure boot, JTAG and download mode off")
    h.add_argument("--port", required=True)
    h.add_argument("--chip", required=True, choices=sorted(HARDEN))
    h.add_argument("--signing-key", required=True, help="the office's Secure Boot v2 key (PEM)")
    h.add_argument("--fe-key", help="this meter's flash-encryption key (made if missing)")
    h.add_argument("--bootloader", required=True, help="bootloader.bin of the production build")
    h.add_argument("--partitions", required=True, help="partition-table.bin (vfs marked encrypted)")
    h.add_argument("--app", required=True, help="micropython.bin of the production build")
    h.add_argument("--work-dir", help="where signed and encrypted images go (default: a temp dir)")
    h.add_argument("--yes", action="store_true", help="burn: eFuses cannot be unburnt")
    h.add_argument("--dry-run", action="store_true")
    h.set_defaults(fn=cmd_harden)

    t = sub.add_parser("svc-token", help="the office's answer to a meter's service challenge")
    t.add_argument("--office-key", required=True, help="the office's private key (PEM)")
    t.add_argument("--challenge", required=True, help="the meter's svc-challenge line")
    t.add_argument("--minutes", type=int, default=30, help="service window, 1..120")
    t.set_defaults(fn=cmd_svc_token)

    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as e:
        print("error: timed out: {}".format(" ".join(str(x) for x in e.cmd[:4])), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
