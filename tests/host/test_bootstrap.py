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


def _filtered_pip(tmp_path, fails, other=True):
    """bootstrap.sh's pip wrapper around a stand-in pip that prints what pip
    prints on a machine whose pip config names file:// indexes lacking the
    package, another warning (other), and (fails) an error and exit 1."""
    _tool(tmp_path, "pip", "echo Collecting x\n"
          "echo \"WARNING: Location 'file:///opt/idx/simple/x/' is ignored: "
          "it is neither a file nor a directory.\" >&2\n"
          + ("echo 'WARNING: x 1.0 is yanked' >&2\n" if other else "")
          + ("echo 'ERROR: No matching distribution found for x' >&2; exit 1" if fails else "exit 0"))
    fn = subprocess.run(["sed", "-n", "/^without_file_index_warnings()/,/^}/p",
                         str(ROOT / "tools" / "bootstrap.sh")], capture_output=True, text=True,
                        check=True).stdout
    assert fn, "bootstrap.sh has no without_file_index_warnings()"
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{fn}\n"
                           f"without_file_index_warnings {tmp_path}/pip install x\necho after"],
                          capture_output=True, text=True, timeout=60, check=False)


def test_pip_loses_only_the_file_index_warning(tmp_path):
    p = _filtered_pip(tmp_path, fails=False)
    assert p.returncode == 0 and p.stdout == "Collecting x\nafter\n", p.stdout
    assert p.stderr == "WARNING: x 1.0 is yanked\n", p.stderr          # other warnings stay
    p = _filtered_pip(tmp_path, fails=False, other=False)     # nothing left for grep to print
    assert p.returncode == 0 and p.stderr == "" and p.stdout.endswith("after\n"), p.stderr


def test_a_failed_pip_still_stops_the_bootstrap_with_its_error(tmp_path):
    p = _filtered_pip(tmp_path, fails=True)
    assert p.returncode == 1 and "after" not in p.stdout, p.stdout
    assert "ERROR: No matching distribution found for x" in p.stderr
    assert "is ignored" not in p.stderr
