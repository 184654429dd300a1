"""A unix-port meter on a pseudo-terminal, the way a technician meets one.

tools/ptyrelay.py makes a pty (the "serial port") and runs `micropython -i
main.py` on it (pure Python, no socat); tests drive it with mpremote (connect <pty> resume exec ...) or pexpect.
Every wait is bounded and the process group is always killed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"
MICROPYTHON = os.environ.get("MICROPYTHON", str(VENV / "micropython"))
MPREMOTE = str(VENV / "mpremote")
sys.path.insert(0, str(ROOT / "firmware"))
from storage.state import mark_provisioned  # noqa: E402 - the firmware's own writer


def mp_path(app_dirs=None):
    """MICROPYPATH like tests/conftest.py mp_env(), or the deployed tree."""
    dirs = app_dirs or [str(ROOT / "firmware"), str(ROOT), str(ROOT / "build" / "lib")]
    return ":".join([".frozen"] + [str(d) for d in dirs])


def mp_env(app_dirs=None):
    return dict(os.environ, MICROPYPATH=mp_path(app_dirs))


def write_device(root, board="unix", speed=20, opts=None, config=None, secrets=None):
    """A device filesystem: board.txt, and the state dir with config/secrets."""
    root = Path(root)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [board, f"state_dir={data}", f"speed={speed}"]
    for k, v in (opts or {}).items():
        lines.append(f"{k}={v}")
    (root / "board.txt").write_text("\n".join(lines) + "\n")
    if config is not None:
        (data / "config.json").write_text(json.dumps(config))
    if secrets is not None:
        (data / "secrets.json").write_text(json.dumps(secrets))
        mark_provisioned(str(data))      # as tools/flash.py provision does
    return data


class PtyMeter:
    """tools/ptyrelay.py: a pty <-> micropython -i <script>, cwd = the device
    root; everything the meter prints is also in <root>/pty.log."""

    def __init__(self, root, script="main", app_dirs=None):
        # script: "main" (the repo's firmware/main.py), a path, or None for a
        # bare interpreter (a freshly flashed board)
        self.root = Path(root)
        self.tty = str(self.root / "tty-meter")
        if script == "main":
            script = str(ROOT / "firmware" / "main.py")
        cmd = [MICROPYTHON, "-i"] + ([str(script)] if script else [])
        self.log = open(self.root / "relay.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "ptyrelay.py"), self.tty,
             "--log", str(self.root / "pty.log"), "--", *cmd],
            cwd=str(self.root), env=mp_env(app_dirs), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.tty):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"ptyrelay did not make {self.tty}")
            time.sleep(0.05)

    def mpremote(self, *args, timeout=30, check=True):
        p = subprocess.run([MPREMOTE, "connect", self.tty, "resume", *args],
                           capture_output=True, text=True, timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"mpremote {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p.stdout.replace("\r\n", "\n")

    def exec(self, code, timeout=30):
        return self.mpremote("exec", code, timeout=timeout)

    def wait_ready(self, timeout=15):
        """Until the REPL answers (boot takes a moment)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                out = self.exec("print('READY')", timeout=5)
                if "READY" in out:
                    return
            except (AssertionError, subprocess.TimeoutExpired) as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"meter REPL not ready: {last}")

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def spawn_repl(root, app_dirs=None, timeout=15):
    """A pexpect session on `micropython -i main.py`, as at a terminal."""
    import pexpect
    child = pexpect.spawn(MICROPYTHON, ["-i", str(ROOT / "firmware" / "main.py")],
                          cwd=str(root), env=mp_env(app_dirs), timeout=timeout,
                          encoding="utf-8", codec_errors="replace")
    child.expect(">>> ")
    return child


def number(out, key):
    """The integer printed after `key=` in mpremote output."""
    for line in out.splitlines():
        if line.startswith(key + "="):
            return int(line.split("=", 1)[1])
    raise AssertionError(f"{key}= not in output:\n{out}")
