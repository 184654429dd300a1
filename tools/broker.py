"""Start a local MQTT broker for the simulator and the tests.

Mosquitto when it is installed (the real thing, as a utility runs it);
otherwise amqtt, a pure-Python broker from PyPI, so the MQTT path is always
real. The broker listens on a free loopback port and is stopped on exit.

    with Broker() as b:          # b.host, b.port, b.kind
        ...
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_path():
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class Broker:
    def __init__(self, kind: str | None = None, port: int | None = None):
        self.kind = kind or ("mosquitto" if mosquitto_path() else "amqtt")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc = None
        self._dir = tempfile.TemporaryDirectory(prefix="broker-")

    def start(self):
        d = Path(self._dir.name)
        if self.kind == "mosquitto":
            conf = d / "mosquitto.conf"
            conf.write_text(
                "listener %d %s\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
                % (self.port, self.host)
            )
            cmd = [mosquitto_path(), "-c", str(conf)]
        else:
            conf = d / "amqtt.yaml"
            conf.write_text(
                "listeners:\n  default:\n    type: tcp\n    bind: %s:%d\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: true\n" % (self.host, self.port)
            )
            cmd = [str(Path(sys.executable).parent / "amqtt"), "-c", str(conf)]
        self.log = open(d / "broker.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (self.kind, (d / "broker.log").read_text()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("%s did not start listening on %d" % (self.kind, self.port))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self._dir.cleanup()
