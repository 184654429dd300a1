"""pytest bridge to the MicroPython unix port.

Every `def test_*` at the top level of tests/mp/test_*.py becomes a pytest
item that runs in its own `micropython` process, with the device's import
path (firmware/ as root, the repo for boards/, build/lib for umqtt). A
failure shows the MicroPython traceback. Limits, per module or per test:

    HEAP = "64K"            # module level: run under -X heapsize=64K
    TIMEOUT = 120           # module level: seconds before the test is killed
    @heap("48K") / @timeout(30)   # per test (decorators from mptest.py)
"""

import ast
import subprocess

import pytest

from mpenv import MICROPYPATH, MICROPYTHON, MP_DIR, ROOT, mp_env  # noqa: F401

DEFAULT_TIMEOUT = 60


def _const(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


class MpFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        heap = None
        timeout = DEFAULT_TIMEOUT
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                name = getattr(node.targets[0], "id", None)
                if name == "HEAP":
                    heap = _const(node.value)
                elif name == "TIMEOUT":
                    timeout = _const(node.value)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                t_heap, t_timeout = heap, timeout
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.args:
                        if dec.func.id == "heap":
                            t_heap = _const(dec.args[0])
                        elif dec.func.id == "timeout":
                            t_timeout = _const(dec.args[0])
                yield MpItem.from_parent(self, name=node.name, heap=t_heap, timeout=t_timeout)


class MpFailure(Exception):
    pass


class MpItem(pytest.Item):
    def __init__(self, *, heap, timeout, **kw):
        super().__init__(**kw)
        self.heap = heap
        self.timeout = timeout

    def runtest(self):
        cmd = [MICROPYTHON]
        if self.heap:
            cmd += ["-X", "heapsize=%s" % self.heap]
        cmd += [str(ROOT / "tests" / "mp_runner.py"), self.path.stem, self.name]
        try:
            p = subprocess.run(
                cmd, cwd=str(ROOT), env=mp_env(), capture_output=True, text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise MpFailure("timed out after %ss\n%s" % (self.timeout, e.stdout or "")) from None
        if p.returncode != 0 or "MP-PASS" not in p.stdout:
            raise MpFailure(
                "MicroPython exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s"
                % (p.returncode, p.stdout[-4000:], p.stderr[-4000:])
            )

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MpFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "mp: %s::%s" % (self.path.name, self.name)


def pytest_pycollect_makemodule(module_path, parent):
    # tests/mp/test_*.py hold MicroPython code: collect them for the unix
    # port instead of importing them under CPython.
    if module_path.parent == MP_DIR:
        return MpFile.from_parent(parent, path=module_path)
    return None
