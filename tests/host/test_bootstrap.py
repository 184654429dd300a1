"""tools/bootstrap.sh on a machine without Mosquitto: as root it installs the
Debian package with apt-get (one update first), otherwise it names the
package and fails. apt-get and id are stand-ins on PATH; the real broker is
hidden by a PATH and SBIN_DIRS without it."""

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool(d, name, body):
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def _machine(tmp_path, uid):
    """A PATH whose first folder has `id` printing uid and an apt-get that logs
    its arguments and 'installs' mosquitto into that folder."""
    fake = tmp_path / "bin"
    fake.mkdir()
    _tool(fake, "id", f"echo {uid}")
    _tool(fake, "apt-get", f'echo "$*" >> {tmp_path}/apt.log\n'
          f'case "$1" in install) printf "#!/bin/sh\\n" > {fake}/mosquitto; '
          f'chmod +x {fake}/mosquitto;; esac')
    env = dict(os.environ, PATH=f"{fake}:/usr/bin:/bin", SBIN_DIRS=str(tmp_path / "nosbin"))
    return env


def _bootstrap(env):
    # the system-package step only: the rest would (re)build the shared .venv
    return subprocess.run(["bash", str(ROOT / "tools" / "bootstrap.sh"), "--system-only"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _apt_log(tmp_path):
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_not_root_names_the_package_and_fails(tmp_path):
    env = _machine(tmp_path, 1000)
    assert subprocess.run(["sh", "-c", "command -v mosquitto"], env=env,
                          capture_output=True, check=False).returncode != 0   # hidden
    p = _bootstrap(env)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "apt-get install mosquitto" in p.stderr, p.stderr
    assert _apt_log(tmp_path) == []                    # nothing run as a non-root user


def test_root_installs_mosquitto_once(tmp_path):
    env = _machine(tmp_path, 0)
    p = _bootstrap(env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _apt_log(tmp_path) == ["update -qq", "install -y -qq --no-install-recommends mosquitto"]
    p = _bootstrap(env)                                # now present: nothing to install
    assert p.returncode == 0 and len(_apt_log(tmp_path)) == 2, p.stdout + p.stderr


def test_broker_lookup_agrees_with_bootstrap(tmp_path, monkeypatch):
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    from broker import mosquitto_path
    env = _machine(tmp_path, 0)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("SBIN_DIRS", env["SBIN_DIRS"])
    assert mosquitto_path() is None
    assert _bootstrap(env).returncode == 0
    assert mosquitto_path() == str(tmp_path / "bin" / "mosquitto")


def test_root_installs_postgresql_when_its_server_binaries_are_missing(tmp_path):
    env = _machine(tmp_path, 0)
    pg_lib = tmp_path / "pglib"
    env["PG_LIB"] = str(pg_lib)
    fake = tmp_path / "bin"
    # this apt-get "installs" both packages: mosquitto on PATH, initdb where Debian puts it
    _tool(fake, "apt-get", f'echo "$*" >> {tmp_path}/apt.log\n'
          f'case "$1" in install) printf "#!/bin/sh\\n" > {fake}/mosquitto; chmod +x {fake}/mosquitto; '
          f'mkdir -p {pg_lib}/15/bin; printf "#!/bin/sh\\n" > {pg_lib}/15/bin/initdb;; esac')
    p = _bootstrap(env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _apt_log(tmp_path)[-1] == "install -y -qq --no-install-recommends mosquitto postgresql"
    assert _bootstrap(env).returncode == 0 and len(_apt_log(tmp_path)) == 2   # present now


def test_not_root_names_postgresql_too(tmp_path):
    env = dict(_machine(tmp_path, 1000), PG_LIB=str(tmp_path / "none"))
    p = _bootstrap(env)
    assert p.returncode != 0 and "apt-get install mosquitto postgresql" in p.stderr, p.stderr


def test_chromium_and_its_driver_are_named_when_missing(tmp_path):
    # the browser tests' packages (tests/host/test_console_browser.py): named
    # when not root, installed with the others as root
    env = dict(_machine(tmp_path, 1000), CHROMIUM=str(tmp_path / "no-chromium"),
               CHROMEDRIVER=str(tmp_path / "no-chromedriver"))
    p = _bootstrap(env)
    assert p.returncode != 0 and "apt-get install mosquitto chromium chromium-driver" in p.stderr, p.stderr
    env = dict(env, CHROMEDRIVER="/usr/bin/chromedriver")
    assert "apt-get install mosquitto chromium\n" in _bootstrap(env).stderr
    (tmp_path / "root").mkdir()
    env = dict(_machine(tmp_path / "root", 0), CHROMIUM=str(tmp_path / "no-chromium"))
    _bootstrap(env)
    assert "install -y -qq --no-install-recommends mosquitto chromium" in _apt_log(tmp_path / "root")
